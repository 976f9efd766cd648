"""Transaction and batch Bundles through the API, on both databases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings
from tests.bundle_entries import patch_entry

FHIR = {"Content-Type": "application/fhir+json"}
MRN = {"system": "http://hospital.example/mrn", "value": "MRN-7"}


def patient_entry(full_url: str = "urn:uuid:p1", **request: Any) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": {"resourceType": "Patient", "identifier": [MRN]},
        "request": {"method": "POST", "url": "Patient", **request},
    }


def observation_entry(subject: str = "urn:uuid:p1", value: Any = 31) -> dict[str, Any]:
    return {
        "fullUrl": "urn:uuid:o1",
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "MADRS total"},
            "subject": {"reference": subject},
            "valueInteger": value,
        },
        "request": {"method": "POST", "url": "Observation"},
    }


def put_request(url: str) -> dict[str, str]:
    return {"method": "PUT", "url": url}


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def total(client: TestClient) -> int:
    """Versions written by the test (the server's own conformance resources excluded)."""
    return sum(
        client.get(f"/fhir/{t}/_history?_summary=count").json()["total"]
        for t in ("Patient", "Observation")
    )


def test_transaction_rewrites_urn_uuid_references(client: TestClient) -> None:
    response = client.post("/fhir", json=transaction(patient_entry(), observation_entry()))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    patient, observation = (e["resource"] for e in body["entry"])
    assert observation["subject"]["reference"] == f"Patient/{patient['id']}"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "201 Created"]


def test_relative_references_resolve_against_an_absolute_full_url(client: TestClient) -> None:
    client.put("/fhir/Patient/abc", json={"resourceType": "Patient", "id": "abc"}, headers=FHIR)
    base = "http://ehr.example/fhir"
    patient = patient_entry(f"{base}/Patient/abc")
    observation = {**observation_entry("Patient/abc"), "fullUrl": f"{base}/Observation/o1"}
    elsewhere = {**observation_entry("Patient/abc"), "fullUrl": "urn:uuid:o2"}  # not under it
    body = client.post("/fhir", json=transaction(patient, observation, elsewhere)).json()
    created = body["entry"][0]["resource"]["id"]
    assert created != "abc"
    subjects = [e["resource"]["subject"]["reference"] for e in body["entry"][1:]]
    assert subjects == [f"Patient/{created}", "Patient/abc"]


def test_transaction_failing_in_its_last_entry_stores_nothing(client: TestClient) -> None:
    bad = observation_entry(value="not a number")
    response = client.post("/fhir", json=transaction(patient_entry(), bad))
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.valueInteger"]
    assert total(client) == 0


def test_retried_transaction_with_if_none_exist_creates_nothing_new(client: TestClient) -> None:
    bundle = transaction(
        patient_entry(ifNoneExist="identifier=http://hospital.example/mrn|MRN-7"),
    )
    first = client.post("/fhir", json=bundle).json()
    retry = client.post("/fhir", json=bundle).json()
    assert retry["entry"][0]["response"]["status"] == "200 OK"
    assert retry["entry"][0]["resource"]["id"] == first["entry"][0]["resource"]["id"]
    assert total(client) == 1


def test_conditional_reference_is_resolved(client: TestClient) -> None:
    client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "identifier": [MRN]}, headers=FHIR
    )
    ref = "Patient?identifier=http://hospital.example/mrn|MRN-7"
    body = client.post("/fhir", json=transaction(observation_entry(subject=ref))).json()
    assert body["entry"][0]["resource"]["subject"]["reference"].startswith("Patient/")


def test_transaction_runs_deletes_before_creates(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()
    bundle = transaction(
        patient_entry(),
        {"request": {"method": "DELETE", "url": f"Patient/{created['id']}"}},
    )
    body = client.post("/fhir", json=bundle).json()
    # response entries keep the request order even though the DELETE ran first
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "204 No Content"]
    assert client.get(f"/fhir/Patient/{created['id']}").status_code == 410


def test_duplicate_full_urls_are_refused(client: TestClient) -> None:
    response = client.post("/fhir", json=transaction(patient_entry(), patient_entry()))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].fullUrl"]


def test_batch_reports_each_entry(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {
                "resource": {"resourceType": "Patient", "gender": 1},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    body = client.post("/fhir", json=bundle).json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "404", "422"]
    assert body["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert total(client) == 1


def test_too_many_entries_is_413(database_url: str) -> None:
    settings = Settings(
        database_url=database_url, max_bundle_entries=2, allowed_hosts=["testserver"]
    )
    with TestClient(create_app(settings)) as client:
        entries = [patient_entry(f"urn:uuid:{n}") for n in range(3)]
        response = client.post("/fhir", json=transaction(*entries))
        assert response.status_code == 413
        assert response.json()["issue"][0]["code"] == "too-costly"


def test_posting_a_non_bundle_to_the_base_is_400(client: TestClient) -> None:
    response = client.post("/fhir", json={"resourceType": "Patient"}, headers=FHIR)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["resourceType"]


def test_batch_get_entry_runs_a_search(client: TestClient) -> None:
    client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "identifier": [MRN]}, headers=FHIR
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient?identifier=MRN-7"}}],
    }
    entry = client.post("/fhir", json=bundle).json()["entry"][0]
    assert entry["response"]["status"] == "200 OK"
    assert entry["resource"]["type"] == "searchset"
    assert len(entry["resource"]["entry"]) == 1


def test_concurrent_transactions_lose_nothing(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(n: int) -> int:
        entries = [
            {
                "fullUrl": f"urn:uuid:{n}-{i}",
                "resource": {"resourceType": "Patient", "identifier": [{"value": f"{n}-{i}"}]},
                "request": {"method": "POST", "url": "Patient"},
            }
            for i in range(5)
        ]
        return client.post("/fhir", json=transaction(*entries)).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(post, range(12)))
    assert statuses == [200] * 12
    assert total(client) == 60


def test_batch_get_entry_with_a_resource_still_runs_a_search(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "request": {"method": "GET", "url": "Patient?_id=nomatch"},
                "resource": {"resourceType": "Patient", "id": 5},
            }
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    entry = response.json()["entry"][0]
    assert (entry["response"]["status"], entry["resource"]["type"]) == ("200 OK", "searchset")


def test_transaction_patch_entry_applies_a_json_patch(client: TestClient) -> None:
    import json

    created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()
    ops = [{"op": "add", "path": "/gender", "value": "female"}]
    entry = patch_entry(f"Patient/{created['id']}", json.dumps(ops).encode())
    body = client.post("/fhir", json=transaction(entry)).json()
    assert body["entry"][0]["resource"]["gender"] == "female"
    assert body["entry"][0]["resource"]["meta"]["versionId"] == "2"


def test_batch_get_entry_reads_a_version(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()
    client.put(
        f"/fhir/Patient/{created['id']}",
        json={"resourceType": "Patient", "id": created["id"], "gender": "male"},
        headers=FHIR,
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{created['id']}/_history/1"}}],
    }
    entry = client.post("/fhir", json=bundle).json()["entry"][0]
    assert entry["resource"]["meta"]["versionId"] == "1"
    assert "gender" not in entry["resource"]


def test_entry_url_without_a_supported_type_names_the_entry(client: TestClient) -> None:
    for url in ("Basic", "Patient/1/2/3", "/"):
        bundle = transaction({"request": {"method": "GET", "url": url}})
        response = client.post("/fhir", json=bundle)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]


def test_conditional_delete_in_a_transaction_refuses_several_matches(client: TestClient) -> None:
    for _ in range(2):
        client.post(
            "/fhir/Patient", json={"resourceType": "Patient", "identifier": [MRN]}, headers=FHIR
        )
    ref = "Patient?identifier=http://hospital.example/mrn|MRN-7"
    response = client.post("/fhir", json=transaction({"request": {"method": "DELETE", "url": ref}}))
    assert response.status_code == 412
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 2


def test_two_entries_on_one_resource_fail_the_transaction(client: TestClient) -> None:
    put = {
        "resource": {"resourceType": "Patient", "id": "twice"},
        "request": {"method": "PUT", "url": "Patient/twice"},
    }
    delete = {"request": {"method": "DELETE", "url": "Patient/twice"}}
    condition = "identifier=http://hospital.example/mrn|MRN-7"
    conditional_put = {
        "resource": {"resourceType": "Patient"},
        "request": put_request(f"Patient?{condition}"),
    }
    cases = [
        [put, dict(put)],
        [put, delete],
        [
            patient_entry("urn:uuid:a", ifNoneExist=condition),
            patient_entry("urn:uuid:b", ifNoneExist=condition),
        ],
        # one condition, two creates under it: a retry would find two
        [patient_entry("urn:uuid:a", ifNoneExist=condition), conditional_put],
        [conditional_put, dict(conditional_put)],
    ]
    for entries in cases:
        response = client.post("/fhir", json=transaction(*entries))
        assert response.status_code == 400, response.text
        assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].request"]
    assert total(client) == 0


def test_a_conditional_delete_and_another_entry_on_its_match_fail_the_transaction(
    client: TestClient,
) -> None:
    created = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "identifier": [MRN]}, headers=FHIR
    ).json()
    delete = {"request": {"method": "DELETE", "url": f"Patient?identifier={MRN['value']}"}}
    update = {
        "resource": {"resourceType": "Patient"},
        "request": put_request(f"Patient/{created['id']}"),
    }
    response = client.post("/fhir", json=transaction(delete, update))
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].request"]
    assert client.get(f"/fhir/Patient/{created['id']}").json()["meta"]["versionId"] == "1"


def test_a_conditional_update_matching_another_id_than_the_body_is_refused(
    client: TestClient,
) -> None:
    client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "identifier": [MRN]}, headers=FHIR
    )
    entry = {
        "resource": {"resourceType": "Patient", "id": "other"},
        "request": put_request(f"Patient?identifier={MRN['value']}"),
    }
    response = client.post("/fhir", json=transaction(entry))
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.id"]


def test_a_delete_entry_with_a_stale_if_match_fails_the_transaction(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()
    url = f"Patient/{created['id']}"
    delete = {"request": {"method": "DELETE", "url": url, "ifMatch": 'W/"2"'}}
    response = client.post("/fhir", json=transaction(delete))
    assert response.status_code == 412, response.text
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0]"]
    assert client.get(f"/fhir/{url}").status_code == 200


def test_a_reference_to_no_entry_of_the_bundle_is_refused(client: TestClient) -> None:
    response = client.post("/fhir", json=transaction(observation_entry("urn:uuid:nowhere")))
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource"]
    # a batch's entries are independent: one cannot name another
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [patient_entry(), observation_entry()],
    }
    statuses = [e["response"]["status"] for e in client.post("/fhir", json=batch).json()["entry"]]
    assert statuses == ["201 Created", "400"]
    assert total(client) == 1


def test_errors_in_conditions_and_patches_name_the_entry(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()
    failing_op = b'[{"op": "remove", "path": "/birthDate"}]'
    cases = [
        (patient_entry(ifNoneExist="nosuch=1"), "Bundle.entry[1].request.ifNoneExist"),
        # an empty parameter would widen the condition, not narrow it
        (
            patient_entry(ifNoneExist="identifier=&gender=male"),
            "Bundle.entry[1].request.ifNoneExist",
        ),
        (observation_entry(subject="Basic?code=x"), "Bundle.entry[1].resource"),
        (patch_entry(f"Patient/{created['id']}", failing_op), "Bundle.entry[1].resource.data[0]"),
    ]
    for entry, expression in cases:
        bundle = transaction({"request": {"method": "GET", "url": "Patient"}}, entry)
        response = client.post("/fhir", json=bundle, headers={"Prefer": "handling=strict"})
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["issue"][0]["expression"] == [expression], response.text


def test_malformed_entry_fields_are_refused_naming_them(client: TestClient) -> None:
    cases = [
        ({**patient_entry(), "fullUrl": ["x"]}, "Bundle.entry[0].fullUrl"),
        (patient_entry(ifNoneExist=5), "Bundle.entry[0].request.ifNoneExist"),
        (
            {**patient_entry(), "request": {"method": "POST", "url": "Patient/12"}},
            "Bundle.entry[0].request.url",
        ),
        ({"request": {"method": "DELETE", "url": "Patient"}}, "Bundle.entry[0].request.url"),
        (
            {"resource": {"resourceType": "Patient", "id": "x"}, "request": put_request("Patient")},
            "Bundle.entry[0].request.url",
        ),
    ]
    for entry, expression in cases:
        response = client.post("/fhir", json=transaction(entry))
        assert response.status_code == 400, response.text
        assert response.json()["issue"][0]["expression"] == [expression]


def response_with_client_score() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The example MADRS QuestionnaireResponse and a score Observation the client derived
    from it (value 5, not the sum), as transaction entries, with the participant and visit
    they refer to."""
    messages = Path(__file__).resolve().parents[2] / "examples" / "messages"
    response = json.loads((messages / "madrs-response.json").read_text())
    score = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "https://fhir-bridge.org/fhir/CodeSystem/assessment",
                    "code": "madrs-total",
                }
            ]
        },
        "subject": response["subject"],
        "effectiveDateTime": response["authored"],
        "valueQuantity": {
            "value": 5,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
        "derivedFrom": [{"reference": "urn:uuid:qr"}],
    }
    entries = [
        {
            "fullUrl": "urn:uuid:qr",
            "resource": response,
            "request": {"method": "POST", "url": "QuestionnaireResponse"},
        },
        {"resource": score, "request": {"method": "POST", "url": "Observation"}},
        *referred_to(response),
    ]
    return response, score, entries


def referred_to(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """PUT entries of the participant and the visit the example messages refer to."""
    patient_ref, visit_ref = resource["subject"]["reference"], resource["encounter"]["reference"]
    visit = {
        "resourceType": "Encounter",
        "id": visit_ref.split("/")[1],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": patient_ref},
    }
    patient = {"resourceType": "Patient", "id": patient_ref.split("/")[1]}
    return [
        {"resource": r, "request": put_request(f"{r['resourceType']}/{r['id']}")}
        for r in (patient, visit)
    ]


def test_client_sent_score_must_match_the_response(client: TestClient) -> None:
    response, score, entries = response_with_client_score()
    items = [item["answer"][0]["valueInteger"] for item in response["item"]]
    refused = client.post("/fhir", json=transaction(*entries))
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.value"]
    score["valueQuantity"]["value"] = sum(items)  # the client's own extraction, correct
    accepted = client.post("/fhir", json=transaction(*entries))
    assert accepted.status_code == 200, accepted.text
    # the client's score is kept and the server adds no second one
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 1


def test_malformed_response_with_a_client_score_is_refused_not_scored(
    client: TestClient,
) -> None:
    response, _, entries = response_with_client_score()
    response["item"][0]["answer"] = {"valueInteger": 1}  # an object, not a list
    refused = client.post("/fhir", json=transaction(*entries))
    assert refused.status_code == 422, refused.text
    expressions = [e for i in refused.json()["issue"] for e in i.get("expression", [])]
    assert "Bundle.entry[0].resource.item[0].answer" in expressions
    assert total(client) == 0


def test_patch_entry_adding_a_nul_character_is_refused(client: TestClient) -> None:
    patch = b'[{"op": "add", "path": "/name", "value": [{"family": "a\\u0000b"}]}]'
    entry = patch_entry("Patient/x", patch)
    response = client.post("/fhir", json=transaction(entry))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.data"]


def test_patch_entry_with_non_text_data_is_refused(client: TestClient) -> None:
    entry = {
        "resource": {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": 5,
        },
        "request": {"method": "PATCH", "url": "Patient/x"},
    }
    response = client.post("/fhir", json=transaction(entry))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.data"]


def test_a_transaction_posted_to_the_base_with_a_trailing_slash_is_served(
    client: TestClient,
) -> None:
    response = client.post(
        "/fhir/", json=transaction(patient_entry()), headers=FHIR, follow_redirects=False
    )
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"] == "201 Created"


def test_a_put_entry_with_the_id_dot_dot_is_refused_naming_the_entry(client: TestClient) -> None:
    entry = {
        "resource": {"resourceType": "Patient", "id": ".."},
        "request": put_request("Patient/.."),
    }
    response = client.post("/fhir", json=transaction(patient_entry(), entry))
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.id"]
    assert total(client) == 0


def test_a_reference_to_an_entry_later_in_the_transaction_resolves(client: TestClient) -> None:
    patient = {
        "resource": {"resourceType": "Patient", "id": "p7"},
        "request": put_request("Patient/p7"),
    }
    response = client.post("/fhir", json=transaction(observation_entry("Patient/p7"), patient))
    assert response.status_code == 200, response.text
    assert total(client) == 2


def test_a_dangling_reference_fails_the_whole_transaction_naming_the_element(
    client: TestClient,
) -> None:
    response = client.post(
        "/fhir", json=transaction(patient_entry(), observation_entry("Patient/nowhere"))
    )
    assert response.status_code == 422, response.text
    assert response.json()["issue"] == [
        {
            "severity": "error",
            "code": "not-found",
            "diagnostics": "The reference 'Patient/nowhere' names no resource on this server",
            "expression": ["Bundle.entry[1].resource.subject.reference"],
        }
    ]
    assert total(client) == 0


def test_a_reference_to_a_resource_the_transaction_deletes_is_dangling(
    client: TestClient,
) -> None:
    assert (
        client.put("/fhir/Patient/p8", json={"resourceType": "Patient", "id": "p8"}).status_code
        == 201
    )
    delete = {"request": {"method": "DELETE", "url": "Patient/p8"}}
    response = client.post("/fhir", json=transaction(delete, observation_entry("Patient/p8")))
    assert response.status_code == 422, response.text
    assert client.get("/fhir/Patient/p8").status_code == 200


def test_references_are_not_checked_when_the_setting_is_off(settings: Settings) -> None:
    settings = settings.model_copy(update={"check_references": False})
    with TestClient(create_app(settings)) as client:
        response = client.post("/fhir", json=transaction(observation_entry("Patient/later")))
        assert response.status_code == 200, response.text
        alone = {
            "resourceType": "Patient",
            "link": [{"other": {"reference": "Patient/x"}, "type": "seealso"}],
        }
        assert client.post("/fhir/Patient", json=alone, headers=FHIR).status_code == 201
