"""`$viewdefinition-export`: kick-off, polling, a file per view of the research view's rows,
cancellation; the Bulk export routes do not answer for its jobs."""

from __future__ import annotations

import io
import time
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.api.test_export import create, participant
from tests.api.test_view_run import PATIENTS, VIEW_OBSERVATIONS, parameters

KICKOFF = "/fhir/$viewdefinition-export"
ASYNC = {"Content-Type": "application/fhir+json", "Prefer": "respond-async"}


def values(body: dict[str, Any], name: str) -> list[Any]:
    found = []
    for param in body["parameter"]:
        if param["name"] == name:
            found.append(param.get("part") or next(v for k, v in param.items() if k != "name"))
    return found


def finished(client: TestClient, location: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(location.removeprefix("http://testserver"))
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 202, response.text
        assert values(response.json(), "status")[0] in ("accepted", "in-progress")
        assert response.headers["retry-after"] == "2"
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_file_per_view_of_research_rows(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    participant(client, study, "Zebediah Quuxley", "MRN-7734219")
    stored = create(client, PATIENTS)
    response = client.post(
        KICKOFF,
        json=parameters(
            {"name": "clientTrackingId", "valueString": "monthly"},
            {
                "name": "view",
                "part": [
                    {"name": "name", "valueString": "people"},
                    {
                        "name": "viewReference",
                        "valueReference": {"reference": f"ViewDefinition/{stored}"},
                    },
                ],
            },
            {"name": "view", "part": [{"name": "viewResource", "resource": VIEW_OBSERVATIONS}]},
            {"name": "_format", "valueCode": "csv"},
        ),
        headers=ASYNC,
    )
    assert response.status_code == 202, response.text
    location = response.headers["content-location"]
    assert values(response.json(), "location") == [location]
    assert values(response.json(), "clientTrackingId") == ["monthly"]

    done = finished(client, location)
    assert values(done, "status") == ["completed"]
    assert values(done, "_format") == ["csv"]
    outputs = {
        part[0]["valueString"]: [p["valueUri"] for p in part[1:]] for part in values(done, "output")
    }
    assert list(outputs) == ["people", "view_2"]
    files = {}
    for name, [url] in outputs.items():
        got = client.get(url.removeprefix("http://testserver"))
        assert got.status_code == 200
        assert got.headers["content-type"] == "text/csv; charset=utf-8"
        files[name] = got.text
    assert files["people"].splitlines()[0] == "id,family,active,given"
    assert len(files["people"].splitlines()) == 2
    assert len(files["view_2"].splitlines()) == 3
    for secret in ("Zebediah", "Quuxley", "MRN-7734219"):
        assert secret not in files["people"] + files["view_2"]

    export_id = values(done, "exportId")[0]
    assert client.get(f"/fhir/$export-status/{export_id}").status_code == 404
    assert client.delete(location.removeprefix("http://testserver")).status_code == 202
    assert client.get(location.removeprefix("http://testserver")).status_code == 404


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ([], 400, "required"),
        ([{"name": "view", "part": [{"name": "name", "valueString": "x"}]}], 400, "required"),
        (
            [{"name": "viewReference", "valueReference": {"reference": "ViewDefinition/nope"}}],
            404,
            "not-found",
        ),
        ([{"name": "viewResource", "resource": {"resource": "Patient"}}], 422, "required"),
        (
            [
                {"name": "viewResource", "resource": PATIENTS},
                {"name": "_format", "valueCode": "xml"},
            ],
            400,
            "not-supported",
        ),
        (
            [
                {"name": "viewResource", "resource": PATIENTS},
                {"name": "patient", "valueReference": {"reference": "Patient/nobody"}},
            ],
            404,
            "not-found",
        ),
        (
            [
                {"name": "viewResource", "resource": PATIENTS},
                {"name": "viewResource", "resource": PATIENTS},
            ],
            400,
            "invalid",
        ),
    ],
)
def test_a_bad_kickoff_is_refused_before_any_job(
    client: TestClient, params: list[dict[str, Any]], status: int, code: str
) -> None:
    response = client.post(KICKOFF, json=parameters(*params), headers=ASYNC)
    assert response.status_code == status, response.text
    assert response.json()["issue"][0]["code"] == code


def test_the_kickoff_needs_respond_async(client: TestClient) -> None:
    body = parameters({"name": "viewResource", "resource": PATIENTS})
    response = client.post(KICKOFF, json=body, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 400
    assert "respond-async" in response.json()["issue"][0]["diagnostics"]


def test_a_view_failing_on_the_data_fails_the_job(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    participant(client, study, "Ann Stayer", "M1")
    view = {
        **VIEW_OBSERVATIONS,
        "select": [{"column": [{"name": "c", "path": "status | code.coding.code"}]}],
    }
    response = client.post(
        KICKOFF, json=parameters({"name": "viewResource", "resource": view}), headers=ASYNC
    )
    assert response.status_code == 202
    location = response.headers["content-location"].removeprefix("http://testserver")
    deadline = time.monotonic() + 30
    while (body := client.get(location).json()) and values(body, "status") != ["failed"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "retry-after" not in client.get(location).headers
    [error] = values(body, "error")
    assert error == (
        "the view view_1 failed on the data at ViewDefinition.select[0].column[0].path"
    )


def test_ndjson_is_the_default_format(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    participant(client, study, "Ann Stayer", "M1")
    response = client.post(
        KICKOFF, json=parameters({"name": "viewResource", "resource": PATIENTS}), headers=ASYNC
    )
    done = finished(client, response.headers["content-location"])
    [[name, location]] = values(done, "output")
    assert name["valueString"] == "patients"
    got = client.get(location["valueUri"].removeprefix("http://testserver"))
    assert got.headers["content-type"] == "application/x-ndjson"
    assert [sorted(orjson.loads(line)) for line in got.content.splitlines()] == [
        ["active", "family", "given", "id"]
    ]


def test_parquet_files_hold_the_rows_of_the_view(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    participant(client, study, "Ann Stayer", "M1")
    response = client.post(
        KICKOFF,
        json=parameters(
            {"name": "viewResource", "resource": PATIENTS},
            {"name": "_format", "valueCode": "parquet"},
        ),
        headers=ASYNC,
    )
    done = finished(client, response.headers["content-location"])
    [[_, location]] = values(done, "output")
    assert location["valueUri"].endswith("/patients.parquet")
    got = client.get(location["valueUri"].removeprefix("http://testserver"))
    assert got.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(got.content))
    assert table.column_names == ["id", "family", "active", "given"]
    assert table.num_rows == 1
    assert "Stayer" not in str(table.to_pylist())
