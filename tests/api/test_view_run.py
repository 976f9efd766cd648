"""`$viewdefinition-run`: parameters, formats, bounds and errors over inline resources; over
this server's data, rows of the research view only."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from fhir_bridge.services import view_parquet
from tests.api.test_export import create, make_client, participant

FHIR = {"Content-Type": "application/fhir+json"}
RUN = "/fhir/$viewdefinition-run"
PATIENTS = {
    "resourceType": "ViewDefinition",
    "name": "patients",
    "status": "active",
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "family", "path": "name.family.first()"},
                {"name": "active", "path": "active"},
                {"name": "given", "path": "name.given", "collection": True},
            ]
        }
    ],
}
ANN = {"resourceType": "Patient", "id": "a", "active": True, "name": [{"family": "Ann"}]}
BO = {
    "resourceType": "Patient",
    "id": "b",
    "name": [{"family": "Bo, Jr", "given": ["X", "Y"]}],
}


def parameters(*params: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(params)}


def inline(*resources: dict[str, Any], view: dict[str, Any] = PATIENTS) -> list[dict[str, Any]]:
    return [
        {"name": "viewResource", "resource": view},
        *({"name": "resource", "resource": r} for r in resources),
    ]


def post(client: TestClient, *params: dict[str, Any], **headers: str) -> Any:
    return client.post(RUN, json=parameters(*params), headers={**FHIR, **headers})


def test_json_is_an_array_of_rows_in_column_order(client: TestClient) -> None:
    response = post(client, *inline(ANN, BO), {"name": "_format", "valueCode": "json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [
        {"id": "a", "family": "Ann", "active": True, "given": []},
        {"id": "b", "family": "Bo, Jr", "active": None, "given": ["X", "Y"]},
    ]


def test_ndjson_is_the_default(client: TestClient) -> None:
    response = post(client, *inline(ANN, BO))
    assert response.headers["content-type"] == "application/x-ndjson"
    assert [orjson.loads(line)["id"] for line in response.content.splitlines()] == ["a", "b"]


def test_csv_with_and_without_a_header(client: TestClient) -> None:
    response = post(client, *inline(ANN, BO), {"name": "_format", "valueCode": "csv"})
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.text == (
        'id,family,active,given\r\na,Ann,true,[]\r\nb,"Bo, Jr",,"[""X"",""Y""]"\r\n'
    )
    bare = post(
        client,
        *inline(ANN),
        {"name": "_format", "valueCode": "text/csv"},
        {"name": "header", "valueBoolean": False},
    )
    assert bare.text == "a,Ann,true,[]\r\n"


def test_accept_names_the_format_when_format_does_not(client: TestClient) -> None:
    response = post(client, *inline(ANN), Accept="text/csv")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    url = post(client, *inline(ANN), Accept="text/csv")
    assert url.text.startswith("id,family")
    response = client.post(
        f"{RUN}?_format=json", json=parameters(*inline(ANN)), headers={**FHIR, "Accept": "text/csv"}
    )
    assert response.json() == [{"id": "a", "family": "Ann", "active": True, "given": []}]


def test_limit_bounds_the_rows(client: TestClient) -> None:
    response = post(client, *inline(ANN, BO), {"name": "_limit", "valueInteger": 1})
    assert len(response.content.splitlines()) == 1


SCORES = {
    "resourceType": "ViewDefinition",
    "name": "scores",
    "status": "active",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "code", "path": "code.coding.first().code", "type": "code"},
                {"name": "total", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "parts", "path": "component.count()", "type": "integer"},
                {"name": "noted", "path": "note.exists()", "type": "boolean"},
                {"name": "at", "path": "effective.ofType(dateTime)", "type": "dateTime"},
                {"name": "codes", "path": "code.coding.code", "collection": True},
            ]
        }
    ],
}


def score(n: int, total: float | None) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"code": f"c{n}"}, {"code": "madrs-total"}]},
        "effectiveDateTime": f"2024-03-0{n + 1}T10:00:00+01:00",
        "component": [{"code": {"text": "x"}}] * n,
    }
    if total is not None:
        observation["valueQuantity"] = {"value": total}
    if n % 2:
        observation["note"] = [{"text": "seen"}]
    return observation


SCORE_ROWS = [score(0, 24), score(1, 12.5), score(2, None), score(3, 0), score(4, 7.25)]


def test_parquet_holds_the_rows_of_the_json_and_csv_outputs(client: TestClient) -> None:
    def run(output: str) -> Any:
        return post(
            client, *inline(*SCORE_ROWS, view=SCORES), {"name": "_format", "valueCode": output}
        )

    response = run("parquet")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.content))
    assert [str(field.type) for field in table.schema] == [
        "string",
        "string",
        "double",
        "int64",
        "bool",
        "string",
        "string",
    ]
    rows = table.to_pylist()
    as_json = run("json").json()
    assert len(rows) == len(as_json) == 5
    typed = ("total", "parts", "noted")
    assert [{k: row[k] for k in typed} for row in rows] == [
        {k: row[k] for k in typed} for row in as_json
    ]
    as_csv = list(csv.DictReader(io.StringIO(run("csv").text)))
    text = ("id", "code", "at", "codes")
    assert [{k: row[k] or "" for k in text} for row in rows] == [
        {k: row[k] for k in text} for row in as_csv
    ]
    assert rows[0]["codes"] == '["c0","madrs-total"]'
    assert rows[2]["total"] is None


def test_parquet_is_written_in_row_groups_of_bounded_size(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view_parquet, "ROW_GROUP", 2)
    response = post(
        client, *inline(*SCORE_ROWS, view=SCORES), {"name": "_format", "valueCode": "parquet"}
    )
    parquet_file = pq.ParquetFile(io.BytesIO(response.content))
    assert [parquet_file.metadata.row_group(n).num_rows for n in range(3)] == [2, 2, 1]
    assert parquet_file.metadata.num_row_groups == 3


def test_parquet_of_no_rows_is_a_file_with_the_columns(client: TestClient) -> None:
    response = post(client, *inline(view=SCORES), {"name": "_format", "valueCode": "parquet"})
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == 0
    assert table.column_names == ["id", "code", "total", "parts", "noted", "at", "codes"]


@pytest.mark.parametrize(
    ("extra", "status", "code", "expression"),
    [
        ({"name": "_format", "valueCode": "xml"}, 400, "not-supported", "Parameters.parameter[2]"),
        (
            {"name": "source", "valueString": "s3://x"},
            400,
            "not-supported",
            "Parameters.parameter[2]",
        ),
        ({"name": "colour", "valueString": "red"}, 400, "not-supported", "Parameters.parameter[2]"),
        ({"name": "_limit", "valueInteger": 0}, 400, "invalid", "Parameters.parameter[2]"),
        ({"name": "_limit", "valueString": "ten"}, 400, "invalid", "Parameters.parameter[2]"),
        ({"name": "_limit", "valueInteger": 10**9}, 400, "too-costly", "Parameters.parameter[2]"),
        ({"name": "header", "valueString": "maybe"}, 400, "invalid", "Parameters.parameter[2]"),
        (
            {"name": "patient", "valueReference": {"reference": "Patient/a"}},
            400,
            "not-supported",
            "Parameters.parameter[2]",
        ),
        (
            {"name": "viewReference", "valueReference": {"reference": "ViewDefinition/x"}},
            400,
            "invalid",
            "Parameters.parameter[2]",
        ),
    ],
)
def test_a_bad_parameter_is_refused_by_name(
    client: TestClient, extra: dict[str, Any], status: int, code: str, expression: str
) -> None:
    response = post(client, *inline(ANN), extra)
    assert response.status_code == status, response.text
    [issue] = response.json()["issue"]
    assert (issue["code"], issue["expression"]) == (code, [expression])


def test_an_invalid_view_is_a_422_naming_the_element(client: TestClient) -> None:
    view = {**PATIENTS, "select": [{"column": [{"name": "id", "path": "id.where("}]}]}
    response = post(client, *inline(ANN, view=view))
    assert response.status_code == 422
    [issue] = response.json()["issue"]
    assert issue["expression"] == ["Parameters.parameter[0].resource.select[0].column[0].path"]
    assert issue["diagnostics"].startswith(issue["expression"][0] + ": ")


def test_a_view_failing_on_the_data_is_a_422_naming_the_element(client: TestClient) -> None:
    view = {**PATIENTS, "select": [{"column": [{"name": "given", "path": "name.given"}]}]}
    response = post(client, *inline(BO, view=view))
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == [
        "Parameters.parameter[0].resource.select[0].column[0].path"
    ]


def test_no_view_is_required(client: TestClient) -> None:
    response = post(client, {"name": "resource", "resource": ANN})
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "required"


def test_inline_resources_are_bounded_in_number_and_bytes(
    database_url: str, tmp_path: Path
) -> None:
    with make_client(
        database_url, tmp_path, max_view_run_resources=1, max_view_run_bytes=2000
    ) as client:
        response = post(client, *inline(ANN, BO))
        assert response.status_code == 413
        assert response.json()["issue"][0]["code"] == "too-costly"
        big = {**ANN, "text": {"status": "generated", "div": "x" * 3000}}
        assert post(client, *inline(big)).status_code == 413


def test_more_rows_than_the_server_allows_need_a_limit(database_url: str, tmp_path: Path) -> None:
    with make_client(database_url, tmp_path, max_view_run_rows=1) as client:
        response = post(client, *inline(ANN, BO))
        assert response.status_code == 400
        assert response.json()["issue"][0]["code"] == "too-costly"
        assert post(client, *inline(ANN, BO), {"name": "_limit", "valueInteger": 1}).is_success


def test_a_stored_view_runs_by_reference_and_by_its_url(client: TestClient) -> None:
    url = "https://fhir-bridge.org/fhir/ViewDefinition/patients"
    view_id = create(client, {**PATIENTS, "url": url})
    resources = [{"name": "resource", "resource": ANN}]
    for reference in (
        f"ViewDefinition/{view_id}",
        url,
        f"http://testserver/fhir/ViewDefinition/{view_id}",
    ):
        response = post(
            client,
            {"name": "viewReference", "valueReference": {"reference": reference}},
            *resources,
        )
        assert response.status_code == 200, (reference, response.text)
        assert orjson.loads(response.content)["id"] == "a"
    instance = client.get(f"/fhir/ViewDefinition/{view_id}/$viewdefinition-run?_format=csv")
    assert instance.status_code == 200
    assert instance.text == "id,family,active,given\r\n"  # no participants on this server
    missing = post(client, {"name": "viewReference", "valueString": "ViewDefinition/nope"})
    assert missing.status_code == 404
    assert missing.json()["issue"][0]["expression"] == ["Parameters.parameter[0]"]
    assert client.get("/fhir/ViewDefinition/nope/$viewdefinition-run").status_code == 404


VIEW_OBSERVATIONS = {
    "resourceType": "ViewDefinition",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "effective", "path": "effective.ofType(dateTime)"},
                {"name": "note", "path": "note.text.first()"},
            ]
        }
    ],
}


def test_over_server_data_every_row_is_of_the_research_view(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    zeb = participant(client, study, "Zebediah Quuxley", "MRN-7734219")
    participant(client, study, "Cy Refuser", "M3", consent="deny")
    outsider = create(client, {"resourceType": "Patient", "name": [{"family": "Outsider"}]})
    stored = client.get("/fhir/Observation", params={"_count": 100}).json()["entry"]
    stored_ids = {entry["resource"]["id"] for entry in stored}

    patients = post(
        client,
        {"name": "viewReference", "valueString": f"ViewDefinition/{create(client, PATIENTS)}"},
    )
    observations = post(client, {"name": "viewResource", "resource": VIEW_OBSERVATIONS})
    text = patients.content + observations.content
    for secret in ("Zebediah", "Quuxley", "Refuser", "Outsider", "MRN-7734219", zeb, outsider):
        assert secret.encode() not in text, secret
    assert not stored_ids & {orjson.loads(line)["id"] for line in observations.content.splitlines()}
    [person] = [orjson.loads(line) for line in patients.content.splitlines()]
    assert person["family"] is None
    rows = [orjson.loads(line) for line in observations.content.splitlines()]
    assert len(rows) == 2  # the refuser's are left out
    assert {row["patient"] for row in rows} == {person["id"]}
    assert {row["note"] for row in rows} == {None}  # free text is dropped
    assert all(row["effective"] not in ("2024-03-05T09:30:00+01:00",) for row in rows)


def test_over_server_data_patient_group_and_since_narrow_the_rows(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    ann = participant(client, study, "Ann Stayer", "M1")
    bo = participant(client, study, "Bo Other", "M2")
    group = create(
        client,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{bo}"}}],
        },
    )
    view = {"name": "viewResource", "resource": VIEW_OBSERVATIONS}

    def patients_of(*params: dict[str, Any]) -> set[str]:
        response = post(client, view, *params)
        assert response.status_code == 200, response.text
        return {orjson.loads(line)["patient"] for line in response.content.splitlines()}

    everyone = patients_of()
    assert len(everyone) == 2
    only_ann = patients_of({"name": "patient", "valueReference": {"reference": f"Patient/{ann}"}})
    only_bo = patients_of({"name": "group", "valueReference": {"reference": f"Group/{group}"}})
    assert len(only_ann) == len(only_bo) == 1 and only_ann | only_bo == everyone
    assert patients_of({"name": "_since", "valueInstant": "2999-01-01T00:00:00Z"}) == set()
    unknown = post(client, view, {"name": "patient", "valueReference": {"reference": "Patient/x"}})
    assert unknown.status_code == 404
    assert unknown.json()["issue"][0]["code"] == "not-found"
