"""The REST interactions on single resources, over the app, on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "gender": "female", "birthDate": "1980-05-01"}


def create(client: TestClient, resource: dict[str, object], **headers: str) -> dict[str, object]:
    response = client.post(
        f"/fhir/{resource['resourceType']}", json=resource, headers={**FHIR, **headers}
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_create_assigns_id_version_and_headers(client: TestClient) -> None:
    response = client.post("/fhir/Patient", json={**PATIENT, "id": "ignored"}, headers=FHIR)
    body = response.json()
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/fhir+json"
    assert body["id"] != "ignored"
    assert body["meta"]["versionId"] == "1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert response.headers["last-modified"].endswith("GMT")


def test_read_returns_the_stored_resource(client: TestClient) -> None:
    created = create(client, PATIENT)
    response = client.get(f"/fhir/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'


def test_read_unknown_is_404_outcome(client: TestClient) -> None:
    response = client.get("/fhir/Patient/nope")
    assert response.status_code == 404
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "not-found", "diagnostics": "Patient/nope is not known"}
        ],
    }


def test_update_makes_a_new_version_and_vread_keeps_the_old(client: TestClient) -> None:
    created = create(client, PATIENT)
    url = f"/fhir/Patient/{created['id']}"
    updated = client.put(url, json={**PATIENT, "id": created["id"], "gender": "male"}, headers=FHIR)
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"
    assert client.get(f"{url}/_history/1").json()["gender"] == "female"
    assert client.get(url).json()["gender"] == "male"


def test_update_with_a_new_client_id_creates(client: TestClient) -> None:
    response = client.put("/fhir/Patient/site-42", json={**PATIENT, "id": "site-42"}, headers=FHIR)
    assert response.status_code == 201
    assert response.json()["id"] == "site-42"
    assert response.headers["location"].endswith("/fhir/Patient/site-42/_history/1")


def test_stale_if_match_is_refused_and_nothing_changes(client: TestClient) -> None:
    created = create(client, PATIENT)
    url = f"/fhir/Patient/{created['id']}"
    body = {**PATIENT, "id": created["id"], "gender": "male"}
    assert client.put(url, json=body, headers={**FHIR, "If-Match": 'W/"1"'}).status_code == 200
    stale = client.put(url, json={**body, "gender": "other"}, headers={**FHIR, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    current = client.get(url).json()
    assert (current["gender"], current["meta"]["versionId"]) == ("male", "2")


def test_a_delete_with_a_stale_if_match_is_refused(client: TestClient) -> None:
    created = create(client, PATIENT)
    url = f"/fhir/Patient/{created['id']}"
    assert client.delete(url, headers={"If-Match": 'W/"2"'}).status_code == 412
    assert client.get(url).status_code == 200
    assert client.delete(url, headers={"If-Match": 'W/"1"'}).status_code == 204


def test_delete_then_read_is_gone_and_history_keeps_it(client: TestClient) -> None:
    created = create(client, PATIENT)
    url = f"/fhir/Patient/{created['id']}"
    assert client.delete(url).status_code == 204
    gone = client.get(url)
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = client.get(f"{url}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]


def test_update_after_delete_revives_with_next_version(client: TestClient) -> None:
    created = create(client, PATIENT)
    url = f"/fhir/Patient/{created['id']}"
    client.delete(url)
    revived = client.put(url, json={**PATIENT, "id": created["id"]}, headers=FHIR)
    assert revived.status_code == 201
    assert revived.json()["meta"]["versionId"] == "3"


def test_prefer_return_minimal_and_outcome(client: TestClient) -> None:
    minimal = client.post(
        "/fhir/Patient", json=PATIENT, headers={**FHIR, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201 and minimal.content == b""
    assert "location" in minimal.headers
    outcome = client.post(
        "/fhir/Patient", json=PATIENT, headers={**FHIR, "Prefer": "return=OperationOutcome"}
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"
    # the warnings of the accepted write, e.g. no narrative (dom-6)
    assert any(i["code"] == "invariant" for i in outcome.json()["issue"])
    # several preferences: separated by commas (RFC 7240)
    for prefer in ("return=minimal, handling=strict", "handling=strict; return=minimal"):
        both = {**FHIR, "Prefer": prefer}
        assert client.post("/fhir/Patient", json=PATIENT, headers=both).content == b"", prefer


def test_patch_and_conditional_update_answer_return_outcome_with_the_warnings(
    client: TestClient,
) -> None:
    created = create(client, PATIENT)
    outcome = {"Prefer": "return=OperationOutcome"}
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    patched = client.patch(
        f"/fhir/Patient/{created['id']}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json", **outcome},
    )
    url = f"/fhir/Patient?_id={created['id']}"
    updated = client.put(url, json=PATIENT, headers={**FHIR, **outcome})
    for response in (patched, updated):
        assert response.status_code == 200, response.text
        assert any(i["code"] == "invariant" for i in response.json()["issue"]), response.text


def test_media_types_are_matched_whatever_their_case(client: TestClient) -> None:
    created = create(client, PATIENT)
    for accept in ("Application/FHIR+JSON", "APPLICATION/JSON"):
        response = client.get(f"/fhir/Patient/{created['id']}", headers={"Accept": accept})
        assert response.status_code == 200, accept
    assert client.get(f"/fhir/Patient/{created['id']}?_format=JSON").status_code == 200


def test_history_pages_with_next_links(client: TestClient) -> None:
    for _ in range(3):
        create(client, PATIENT)
    first = client.get("/fhir/Patient/_history?_count=2").json()
    assert len(first["entry"]) == 2
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    create(client, PATIENT)  # a write between page fetches must not shift the next page
    second = client.get(next_url.replace("http://testserver", "")).json()
    assert len(second["entry"]) == 1
    seen = {e["resource"]["id"] for e in first["entry"] + second["entry"]}
    assert len(seen) == 3


def test_summary_count_on_history(client: TestClient) -> None:
    before = client.get("/fhir/_history?_summary=count").json()["total"]
    for _ in range(3):
        create(client, PATIENT)
    body = client.get("/fhir/_history?_summary=count").json()
    assert body["total"] == before + 3 and "entry" not in body


def test_json_patch_updates_and_versions(client: TestClient) -> None:
    created = create(client, PATIENT)
    url = f"/fhir/Patient/{created['id']}"
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    headers = {"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'}
    response = client.patch(url, json=ops, headers=headers)
    assert response.status_code == 200, response.text
    assert (response.json()["gender"], response.json()["meta"]["versionId"]) == ("other", "2")
    stale = client.patch(url, json=ops, headers=headers)
    assert stale.status_code == 412
    history = client.get(f"{url}/_history").json()["entry"]
    assert [e["request"]["method"] for e in history] == ["PATCH", "POST"]


def test_since_compares_instants_not_text(client: TestClient) -> None:
    created = create(client, PATIENT)
    written = datetime.fromisoformat(created["meta"]["lastUpdated"].replace("Z", "+00:00"))
    plus_five = timezone(timedelta(hours=5))
    an_hour_before = (written - timedelta(hours=1)).astimezone(plus_five).isoformat()
    an_hour_after = (written + timedelta(hours=1)).astimezone(plus_five).isoformat()
    before = client.get("/fhir/Patient/_history", params={"_since": an_hour_before}).json()
    after = client.get("/fhir/Patient/_history", params={"_since": an_hour_after}).json()
    assert len(before["entry"]) == 1
    assert "entry" not in after


def test_an_id_of_dot_or_dot_dot_is_refused_naming_it(client: TestClient) -> None:
    for resource_id in (".", ".."):
        body = {**PATIENT, "id": resource_id}
        response = client.put(f"/fhir/Patient/{resource_id.replace('.', '%2E')}", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["issue"] == [
            {
                "severity": "error",
                "code": "value",
                "diagnostics": f"'{resource_id}' is not a valid FHIR id: "
                "1-64 of A-Z a-z 0-9 - . and not . or ..",
                "expression": ["Patient.id"],
            }
        ]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_a_path_with_a_trailing_slash_is_served_not_redirected(client: TestClient) -> None:
    created = client.post("/fhir/Patient/", json=PATIENT, headers=FHIR)
    assert created.status_code == 201, created.text
    found = client.get("/fhir/Patient/", follow_redirects=False)
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [created.json()["id"]]
    read = client.get(f"/fhir/Patient/{created.json()['id']}/", follow_redirects=False)
    assert read.status_code == 200 and read.json() == created.json()


def test_decimals_are_stored_and_served_as_sent(client: TestClient) -> None:
    values = ["1.50", "1e2", "1.0000000000000001", "123456789012345678901234567890"]
    for value in values:
        body = (
            '{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
            f'"valueQuantity":{{"value":{value},"unit":"kg"}}}}'
        )
        created = client.post("/fhir/Observation", content=body, headers=FHIR)
        assert created.status_code == 201, created.text
        for response in (created, client.get(f"/fhir/Observation/{created.json()['id']}")):
            assert f'"valueQuantity":{{"value":{value},"unit":"kg"}}' in response.text
