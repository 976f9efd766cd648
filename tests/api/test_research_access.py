"""A researcher reaches the research view only: every route a researcher may call answers
none of the identifying values the example trial seeded (names, MRNs, birth dates)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings
from tests.auth_support import assertion, register, seeded_identifiers, token_form

TOKEN_URL = "http://testserver/fhir/auth/token"
STUDY = "psykforsk-mat-mdd"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("research")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'fhir.db'}",
        export_dir=str(folder / "exports"),
        auth="enabled",
        allowed_hosts=["testserver"],
        demo=True,
        demo_keys_dir=str(folder / "keys"),
    )
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client


@pytest.fixture(scope="module")
def researcher(demo: TestClient) -> dict[str, str]:
    client = register(demo.app.state.context.store, "researcher")  # type: ignore[attr-defined]
    form = token_form(assertion(client, TOKEN_URL), "system/*.rs system/ViewDefinition.cruds")
    return {
        "Authorization": f"Bearer {demo.post('/fhir/auth/token', data=form).json()['access_token']}"
    }


def _identifying(text: str) -> list[str]:
    return sorted(value for value in seeded_identifiers() if value in text)


def _finished(demo: TestClient, status_url: str, headers: dict[str, str]) -> str:
    for _ in range(600):
        response = demo.get(status_url.removeprefix("http://testserver"), headers=headers)
        if response.status_code == 200:
            return response.text
        assert response.status_code == 202, response.text
        time.sleep(0.1)
    raise AssertionError("the export did not finish")


def test_the_seeded_identifiers_are_there_to_be_found(demo: TestClient) -> None:
    # the check below would pass vacuously if the examples held no identifying values
    assert len(seeded_identifiers()) >= 30
    assert "SYN-100001" in seeded_identifiers()


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/ResearchStudy",
        "/fhir/Questionnaire?_count=5",
        "/fhir/ViewDefinition",
        f"/fhir/ResearchStudy/{STUDY}/$outcomes",
        "/fhir/$viewdefinition-run?viewReference=ViewDefinition/participants",
        "/fhir/ViewDefinition/scores-long/$viewdefinition-run?_format=csv",
        "/fhir/ViewDefinition/patients/$viewdefinition-run?_format=ndjson",
    ],
)
def test_a_researchers_reads_hold_no_identifier(
    demo: TestClient, researcher: dict[str, str], path: str
) -> None:
    response = demo.get(path, headers=researcher)
    assert response.status_code == 200, response.text
    assert _identifying(response.text) == []


@pytest.mark.parametrize(
    "path", ["/fhir/$export", "/fhir/Patient/$export", f"/fhir/Group/cohort-{STUDY}/$export"]
)
def test_a_researchers_bulk_export_holds_no_identifier(
    demo: TestClient, researcher: dict[str, str], path: str
) -> None:
    kickoff = demo.get(path, headers={**researcher, **ASYNC})
    assert kickoff.status_code == 202, kickoff.text
    body = _finished(demo, kickoff.headers["content-location"], researcher)
    outputs = orjson.loads(body)["output"]
    assert any(o["type"] == "Patient" for o in outputs)
    for output in outputs:
        file = demo.get(output["url"].removeprefix("http://testserver"), headers=researcher)
        assert file.status_code == 200
        assert _identifying(file.text) == [], output["type"]


def test_a_researcher_may_not_ask_for_the_plain_view(
    demo: TestClient, researcher: dict[str, str]
) -> None:
    response = demo.get("/fhir/$export?view=plain", headers={**researcher, **ASYNC})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Patient",
        "/fhir/Patient?identifier=SYN-100001",
        "/fhir/Observation?_include=Observation:subject",
        "/fhir/_history",
        "/fhir/Patient/_history",
        "/fhir/Group?_revinclude=ResearchSubject:individual",
        "/fhir/ResearchStudy?_revinclude=ResearchSubject:study",
        "/fhir/ResearchStudy?_has:ResearchSubject:study:status=on-study",
    ],
)
def test_identified_data_is_refused_to_a_researcher(
    demo: TestClient, researcher: dict[str, str], path: str
) -> None:
    response = demo.get(path, headers=researcher)
    assert response.status_code == 403, path
    assert _identifying(response.text) == []


def _export_lines(demo: TestClient, headers: dict[str, str], response_url: str) -> list[str]:
    body = orjson.loads(_finished(demo, response_url, headers))
    lines: list[str] = []
    for output in body["output"]:
        file = demo.get(output["url"].removeprefix("http://testserver"), headers=headers)
        lines += file.text.splitlines()
    return lines


def test_a_researcher_names_participants_by_their_pseudonyms(
    demo: TestClient, researcher: dict[str, str]
) -> None:
    kickoff = demo.get("/fhir/Patient/$export?_type=Patient", headers={**researcher, **ASYNC})
    pseudonyms = [
        orjson.loads(line)["id"]
        for line in _export_lines(demo, researcher, kickoff.headers["content-location"])
    ]
    chosen = pseudonyms[1]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "patient", "valueReference": {"reference": f"Patient/{chosen}"}},
        ],
    }
    again = demo.post(
        "/fhir/Patient/$export",
        json=parameters,
        headers={**researcher, **ASYNC, "Content-Type": "application/fhir+json"},
    )
    assert again.status_code == 202, again.text
    lines = _export_lines(demo, researcher, again.headers["content-location"])
    assert [orjson.loads(line)["id"] for line in lines] == [chosen]
