"""ViewDefinitions kept and served at [base]/ViewDefinition: checked on write, versioned,
searched by name, url, status and resource."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_bridge.services import view_definitions

FHIR = {"Content-Type": "application/fhir+json"}


def view(name: str = "patients", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ViewDefinition",
        "name": name,
        "status": "active",
        "resource": "Patient",
        "select": [{"column": [{"name": "id", "path": "getResourceKey()"}]}],
        **extra,
    }


def create(client: TestClient, body: dict[str, Any]) -> str:
    response = client.post("/fhir/ViewDefinition", json=body, headers=FHIR)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def test_create_read_update_vread_history_delete(client: TestClient) -> None:
    response = client.post("/fhir/ViewDefinition", json=view(), headers=FHIR)
    assert response.status_code == 201
    view_id = response.json()["id"]
    assert response.headers["location"].endswith(f"/fhir/ViewDefinition/{view_id}/_history/1")
    assert response.headers["etag"] == 'W/"1"'

    read = client.get(f"/fhir/ViewDefinition/{view_id}")
    assert read.status_code == 200
    assert read.json()["name"] == "patients"

    changed = {**read.json(), "status": "retired"}
    updated = client.put(f"/fhir/ViewDefinition/{view_id}", json=changed, headers=FHIR)
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"

    first = client.get(f"/fhir/ViewDefinition/{view_id}/_history/1")
    assert first.json()["status"] == "active"
    history = client.get(f"/fhir/ViewDefinition/{view_id}/_history").json()
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']

    assert client.delete(f"/fhir/ViewDefinition/{view_id}").status_code == 204
    assert client.get(f"/fhir/ViewDefinition/{view_id}").status_code == 410


def test_update_creates_with_the_clients_id_and_honours_if_match(client: TestClient) -> None:
    body = {**view(), "id": "scores"}
    response = client.put("/fhir/ViewDefinition/scores", json=body, headers=FHIR)
    assert response.status_code == 201
    stale = client.put(
        "/fhir/ViewDefinition/scores", json=body, headers={**FHIR, "If-Match": 'W/"7"'}
    )
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"


def test_an_invalid_view_is_refused_naming_the_element(client: TestClient) -> None:
    body = view()
    body["select"][0]["column"].append({"name": "family"})
    response = client.post("/fhir/ViewDefinition", json=body, headers=FHIR)
    assert response.status_code == 422
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "required",
                "diagnostics": "ViewDefinition.select[0].column[1].path: is required",
                "expression": ["ViewDefinition.select[0].column[1].path"],
            }
        ],
    }
    assert client.get("/fhir/ViewDefinition").json()["total"] == 0


def test_a_body_of_another_type_is_refused(client: TestClient) -> None:
    response = client.post("/fhir/ViewDefinition", json={"resourceType": "Patient"}, headers=FHIR)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["resourceType"]


def test_search_by_name_url_status_and_resource(client: TestClient) -> None:
    url = "https://fhir-bridge.org/fhir/ViewDefinition/madrs"
    madrs = create(client, view("madrs_scores", url=url, resource="Observation"))
    patients = create(client, view("patients"))
    retired = create(client, view("patients_old", status="retired"))

    def found(query: str) -> list[str]:
        response = client.get(f"/fhir/ViewDefinition?{query}")
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert found("name=PATIENTS") == [patients, retired]
    assert found("name:exact=patients") == [patients]
    assert found("name:contains=scores") == [madrs]
    assert found(f"url={url}") == [madrs]
    assert found("url:missing=true") == [patients, retired]
    assert found("status=retired") == [retired]
    assert found("resource=Observation,Encounter") == [madrs]
    assert found("resource=Patient&status=active") == [patients]
    assert found(f"_id={madrs}") == [madrs]


def test_search_pages_with_count_and_offset(client: TestClient) -> None:
    made = [create(client, view(f"view_{n}")) for n in range(5)]
    page = client.get("/fhir/ViewDefinition?_count=2").json()
    assert page["total"] == 5
    seen = ids(page)
    while next_link := next((k["url"] for k in page["link"] if k["relation"] == "next"), None):
        page = client.get(next_link.replace("http://testserver", "")).json()
        seen += ids(page)
    assert seen == made


def test_unknown_search_parameters_are_ignored_unless_strict(client: TestClient) -> None:
    create(client, view())
    assert client.get("/fhir/ViewDefinition?title=x").json()["total"] == 1
    strict = client.get("/fhir/ViewDefinition?title=x", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["code"] == "not-supported"


def test_the_number_of_stored_views_is_bounded(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view_definitions, "MAX_STORED", 2)
    create(client, view("one"))
    create(client, view("two"))
    response = client.post("/fhir/ViewDefinition", json=view("three"), headers=FHIR)
    assert response.status_code == 422
    assert response.json()["issue"][0]["code"] == "business-rule"


def test_the_capability_statement_lists_the_view_definition_type(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    served = by_type["ViewDefinition"]
    assert {p["name"] for p in served["searchParam"]} == {
        "_id",
        "name",
        "url",
        "status",
        "resource",
    }
    assert [op["name"] for op in served["operation"]] == ["viewdefinition-run"]
    system = {op["name"] for op in statement["rest"][0]["operation"]}
    assert {"viewdefinition-run", "viewdefinition-export"} <= system


def test_generic_routes_still_refuse_types_this_server_does_not_serve(client: TestClient) -> None:
    assert client.get("/fhir/Spaceship").status_code == 404
    response = client.post("/fhir/ViewDefinition/$validate", json=view(), headers=FHIR)
    assert response.status_code == 404
