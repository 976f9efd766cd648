"""The audit trail on the app: one BALP AuditEvent per request, a Provenance per write."""

from __future__ import annotations

import base64
from typing import Any

from fastapi.testclient import TestClient

from tests.auth_support import Client, assertion, register, token_form

TOKEN_URL = "http://testserver/fhir/auth/token"


def _login(app: TestClient, role: str, scope: str, site: str | None = None) -> dict[str, str]:
    client: Client = register(app.app.state.context.store, role, site=site)  # type: ignore[attr-defined]
    form = token_form(assertion(client, TOKEN_URL), scope)
    token = app.post("/fhir/auth/token", data=form).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "X-Client": client.id}


def _events(app: TestClient, admin: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    bundle = app.get(f"/fhir/AuditEvent?_count=1000{query}", headers=admin).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _patient(mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "http://ehr.example.org/fhir/sid/mrn", "value": mrn}],
    }


def _transaction(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": "Patient"}} for r in resources
        ],
    }


def test_every_request_leaves_exactly_one_audit_event(secured: TestClient) -> None:
    ehr = _login(secured, "ehr", "system/*.cruds", site="site-a")  # 1: its token request
    admin = _login(secured, "admin", "system/*.rs")  # 2
    created = secured.post("/fhir/Patient", json=_patient("A-1"), headers=ehr)  # 3: a write
    patient_id = created.json()["id"]
    secured.get(f"/fhir/Patient/{patient_id}", headers=ehr)  # 4: a read
    secured.get("/fhir/Patient?identifier=A-1", headers=ehr)  # 5: a search
    bundle = _transaction(_patient("B-0"), _patient("B-1"))
    secured.post("/fhir", json=bundle, headers=ehr)  # 6: a transaction
    refused = secured.post("/fhir/Patient", json={"resourceType": "Patient", "x": 1}, headers=ehr)
    assert refused.status_code == 422  # 7: a refused write
    assert secured.get("/fhir/Patient").status_code == 401  # 8: no token
    secured.post("/fhir/auth/token", data={"grant_type": "password"})  # 9: a refused login
    assert len(_events(secured, admin)) == 9
    assert len(_events(secured, admin)) == 10  # the first look at the trail is in it now


def test_an_audit_event_names_who_what_and_the_outcome(secured: TestClient) -> None:
    ehr = _login(secured, "ehr", "system/*.cruds", site="site-a")
    admin = _login(secured, "admin", "system/*.rs")
    patient_id = secured.post("/fhir/Patient", json=_patient("A-1"), headers=ehr).json()["id"]
    created = next(e for e in _events(secured, admin) if e["subtype"][0]["code"] == "create")
    assert created["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Create"
    ]
    assert created["action"] == "C" and created["outcome"] == "0"
    client, server = created["agent"]
    assert client["who"]["identifier"]["value"] == ehr["X-Client"]
    assert client["requestor"] is True and client["location"]["display"] == "site-a"
    assert server["type"]["coding"][0]["code"] == "110152"
    assert created["entity"][0]["what"]["reference"] == f"Patient/{patient_id}/_history/1"
    assert "A-1" not in str(created)  # never the resource's content (its MRN)


def test_identifying_search_values_are_masked_in_the_audit_trail(secured: TestClient) -> None:
    ehr = _login(secured, "ehr", "system/*.cruds")
    admin = _login(secured, "admin", "system/*.rs")
    secured.get("/fhir/Patient?identifier=SYN-424242&gender=female", headers=ehr)
    search = next(e for e in _events(secured, admin) if e["subtype"][0]["code"] == "search-type")
    query = base64.b64decode(search["entity"][-1]["query"]).decode()
    assert "identifier=***" in query and "gender=female" in query
    assert "424242" not in str(search)


def test_a_refused_login_is_audited_as_a_failed_login(secured: TestClient) -> None:
    admin = _login(secured, "admin", "system/*.rs")
    secured.post("/fhir/auth/token", data={"grant_type": "client_credentials"})
    logins = [e for e in _events(secured, admin) if e["type"]["code"] == "110114"]
    assert sorted(e["outcome"] for e in logins) == ["0", "4"]


def test_a_write_gets_a_provenance_of_each_version_written(secured: TestClient) -> None:
    ehr = _login(secured, "ehr", "system/*.cruds", site="site-a")
    bundle = _transaction(_patient("B-0"), _patient("B-1"))
    response = secured.post("/fhir", json=bundle, headers=ehr).json()
    locations = sorted(e["response"]["location"] for e in response["entry"])
    provenances = secured.get("/fhir/Provenance", headers=ehr).json()["entry"]
    assert len(provenances) == 1
    provenance = provenances[0]["resource"]
    assert sorted(t["reference"] for t in provenance["target"]) == locations
    agent = provenance["agent"][0]
    assert agent["who"]["identifier"]["value"] == ehr["X-Client"]
    assert agent["onBehalfOf"]["display"] == "site-a"
    assert provenance["activity"]["coding"][0]["code"] == "CREATE"


def test_a_failed_transaction_leaves_a_failure_event_and_no_provenance(
    secured: TestClient,
) -> None:
    ehr = _login(secured, "ehr", "system/*.cruds")
    admin = _login(secured, "admin", "system/*.rs")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _patient("C-1"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "Patient", "x": 1},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    assert secured.post("/fhir", json=bundle, headers=ehr).status_code == 422
    assert secured.get("/fhir/Provenance", headers=ehr).json().get("entry", []) == []
    transaction = next(
        e for e in _events(secured, admin) if e["subtype"][0]["code"] == "transaction"
    )
    assert transaction["outcome"] == "4"


def test_only_an_admin_reads_the_audit_trail(secured: TestClient) -> None:
    for role, scope in (("ehr", "system/*.cruds"), ("researcher", "system/*.rs")):
        headers = _login(secured, role, scope)
        assert secured.get("/fhir/AuditEvent", headers=headers).status_code == 403, role


def test_what_an_ehr_of_a_site_writes_carries_the_site_in_meta_source(
    secured: TestClient,
) -> None:
    ehr = _login(secured, "ehr", "system/*.cruds", site="site-a")
    created = secured.post("/fhir/Patient", json=_patient("S-1"), headers=ehr).json()
    assert created["meta"]["source"] == "urn:fhir-bridge:site:site-a"
    found = secured.get("/fhir/Patient?_source=urn:fhir-bridge:site:site-a", headers=ehr).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]
