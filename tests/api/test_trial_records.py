"""The trial's rules over stored data on the HTTP write path: doses per dosing session, the
visit schedule, withdrawal, one score per visit (each on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from fhir_bridge.mapping import load_mappings
from fhir_bridge.mapping.observations import score_observation

FHIR = {"Content-Type": "application/fhir+json"}
OUTCOME = {**FHIR, "Prefer": "return=OperationOutcome"}
VISIT = "https://fhir-bridge.org/fhir/CodeSystem/visit"
QUALITY = "https://fhir-bridge.org/fhir/CodeSystem/data-quality"
UCUM = "http://unitsofmeasure.org"


def _create(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR)
    assert response.status_code == 201, response.text
    return f"{resource['resourceType']}/{response.json()['id']}"


def _patient(client: TestClient) -> str:
    return _create(client, {"resourceType": "Patient", "gender": "female"})


def _visit(client: TestClient, patient: str, code: str, start: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": VISIT, "code": code}]}],
        "subject": {"reference": patient},
        "period": {"start": start},
    }


def _score(
    instrument: str, values: list[int], patient: str, encounter: str, when: str
) -> dict[str, Any]:
    spec = load_mappings().instrument(instrument)
    items = {item.link_id: v for item, v in zip(spec.items, values, strict=True)}
    return score_observation(
        spec, items, spec.score(items), subject=patient, effective=when, encounter=encounter
    )


def _dose(patient: str, encounter: str, mg: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://fdasis.nlm.nih.gov", "code": "KE1SEN21RM"}]
        },
        "subject": {"reference": patient},
        "context": {"reference": encounter},
        "effectiveDateTime": "2023-03-08T09:00:00Z",
        "dosage": {
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]},
            "dose": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"},
        },
    }


def _tags(client: TestClient, reference: str) -> list[str]:
    meta = client.get(f"/fhir/{reference}").json()["meta"]
    return [t["code"] for t in meta.get("tag", []) if t["system"] == QUALITY]


def _issues(response: Any) -> list[tuple[str, str, list[str]]]:
    return [(i["severity"], i["code"], i.get("expression", [])) for i in response.json()["issue"]]


def test_doses_of_one_session_above_the_maximum_are_stored_with_a_warning_and_a_flag(
    client: TestClient,
) -> None:
    patient = _patient(client)
    session = _create(client, _visit(client, patient, "dosing-1", "2023-03-08"))
    first = _create(client, _dose(patient, session, 120))
    response = client.post(
        "/fhir/MedicationAdministration", json=_dose(patient, session, 100), headers=OUTCOME
    )
    assert response.status_code == 201, response.text
    warnings = [i for i in response.json()["issue"] if i["code"] == "business-rule"]
    assert warnings == [
        {
            "severity": "warning",
            "code": "business-rule",
            "diagnostics": f"MDMA doses of the session {session} add up to 220 mg, above the "
            "protocol's maximum of 180 mg per session",
            "expression": ["MedicationAdministration.dosage.dose.value"],
        }
    ]
    second = response.headers["Location"].split("/_history")[0].split("/fhir/")[1]
    assert _tags(client, first) == []
    assert _tags(client, second) == ["dose-above-session-maximum"]
    found = client.get(f"/fhir/MedicationAdministration?_tag={QUALITY}|dose-above-session-maximum")
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [second.split("/")[1]]


def test_doses_within_the_maximum_are_not_flagged(client: TestClient) -> None:
    patient = _patient(client)
    session = _create(client, _visit(client, patient, "dosing-1", "2023-03-08"))
    _create(client, _dose(patient, session, 120))
    second = _create(client, _dose(patient, session, 60))
    assert _tags(client, second) == []


def test_an_instrument_at_a_visit_the_protocol_does_not_schedule_is_refused(
    client: TestClient,
) -> None:
    patient = _patient(client)
    dosing = _create(client, _visit(client, patient, "dosing-1", "2023-03-08"))
    score = _score("madrs", [3] * 10, patient, dosing, "2023-03-08")
    response = client.post("/fhir/Observation", json=score, headers=FHIR)
    assert response.status_code == 422, response.text
    assert response.json()["issue"] == [
        {
            "severity": "error",
            "code": "business-rule",
            "diagnostics": "the protocol does not schedule MADRS at visit dosing-1 (V5); it is "
            "collected at: baseline, post-treatment, follow-up-7m",
            "expression": ["Observation.encounter"],
        }
    ]


def test_cssrs_at_an_unscheduled_visit_is_stored_with_a_warning_and_a_flag(
    client: TestClient,
) -> None:
    patient = _patient(client)
    prep = _create(client, _visit(client, patient, "preparatory-1", "2023-02-08"))
    score = _score("cssrs", [0] * 5, patient, prep, "2023-02-08")
    response = client.post("/fhir/Observation", json=score, headers=OUTCOME)
    assert response.status_code == 201, response.text
    assert ("warning", "business-rule", ["Observation.encounter"]) in _issues(response)
    stored = response.headers["Location"].split("/_history")[0].split("/fhir/")[1]
    assert _tags(client, stored) == ["unscheduled-assessment"]


def test_a_visit_dated_before_an_earlier_protocol_visit_is_refused(client: TestClient) -> None:
    patient = _patient(client)
    _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    early = _visit(client, patient, "post-treatment", "2023-02-01")
    response = client.post("/fhir/Encounter", json=early, headers=FHIR)
    assert response.status_code == 422, response.text
    assert response.json()["issue"] == [
        {
            "severity": "error",
            "code": "business-rule",
            "diagnostics": "visit post-treatment (V13) on 2023-02-01 is dated before visit "
            "baseline (V3) on 2023-03-01: visits follow protocol order",
            "expression": ["Encounter.period.start"],
        }
    ]


def test_a_visit_in_the_future_is_refused(client: TestClient) -> None:
    patient = _patient(client)
    response = client.post(
        "/fhir/Encounter", json=_visit(client, patient, "baseline", "2031-03-01"), headers=FHIR
    )
    assert response.status_code == 422, response.text
    errors = [i for i in _issues(response) if i[0] == "error"]
    assert errors == [("error", "business-rule", ["Encounter.period.start"])]


def test_a_visit_outside_its_window_is_stored_with_a_warning_and_a_flag(
    client: TestClient,
) -> None:
    patient = _patient(client)
    _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    late = _visit(client, patient, "post-treatment", "2023-03-20")
    response = client.post("/fhir/Encounter", json=late, headers=OUTCOME)
    assert response.status_code == 201, response.text
    warning = next(i for i in response.json()["issue"] if i["code"] == "business-rule")
    assert warning["diagnostics"] == (
        "visit post-treatment (V13) on 2023-03-20 is outside its window: +91 ± 21 days from "
        "baseline on 2023-03-01"
    )
    stored = response.headers["Location"].split("/_history")[0].split("/fhir/")[1]
    assert _tags(client, stored) == ["visit-outside-window"]


def _withdrawn(client: TestClient, patient: str, end: str) -> None:
    _create(
        client,
        {
            "resourceType": "ResearchSubject",
            "status": "withdrawn",
            "period": {"start": "2023-01-01", "end": end},
            "study": {"reference": "ResearchStudy/psykforsk-mat-mdd"},
            "individual": {"reference": patient},
        },
    )


def test_an_assessment_after_withdrawal_is_refused(client: TestClient) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "post-treatment", "2023-05-01"))
    _withdrawn(client, patient, "2023-04-01")
    score = _score("madrs", [1] * 10, patient, visit, "2023-05-01")
    response = client.post("/fhir/Observation", json=score, headers=FHIR)
    assert response.status_code == 422, response.text
    assert response.json()["issue"] == [
        {
            "severity": "error",
            "code": "business-rule",
            "diagnostics": "assessment after withdrawal: the participant withdrew on "
            "2023-04-01, this assessment is dated 2023-05-01",
            "expression": ["Observation.effectiveDateTime"],
        }
    ]


def test_an_adverse_event_after_withdrawal_is_accepted(client: TestClient) -> None:
    patient = _patient(client)
    _withdrawn(client, patient, "2023-04-01")
    event = {
        "resourceType": "AdverseEvent",
        "actuality": "actual",
        "subject": {"reference": patient},
        "date": "2023-05-01",
    }
    assert client.post("/fhir/AdverseEvent", json=event, headers=FHIR).status_code == 201


def test_a_second_score_for_one_visit_is_a_conflict(client: TestClient) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    first = _create(client, _score("madrs", [3] * 10, patient, visit, "2023-03-01"))
    again = _score("madrs", [2] * 10, patient, visit, "2023-03-01")
    response = client.post("/fhir/Observation", json=again, headers=FHIR)
    assert response.status_code == 422, response.text
    assert response.json()["issue"] == [
        {
            "severity": "error",
            "code": "duplicate",
            "diagnostics": f"MADRS is already scored for {patient} at {visit} ({first}): "
            "update that one to correct it",
            "expression": ["Observation.code"],
        }
    ]


def test_an_update_of_the_score_corrects_it(client: TestClient) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    first = _create(client, _score("madrs", [3] * 10, patient, visit, "2023-03-01"))
    corrected = {**_score("madrs", [2] * 10, patient, visit, "2023-03-01")}
    corrected["id"] = first.split("/")[1]
    response = client.put(f"/fhir/{first}", json=corrected, headers=FHIR)
    assert response.status_code == 200, response.text
    assert response.json()["valueQuantity"]["value"] == 20
    assert response.json()["meta"]["versionId"] == "2"


def _response(patient: str, encounter: str) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "https://fhir-bridge.org/fhir/Questionnaire/madrs",
        "status": "completed",
        "subject": {"reference": patient},
        "encounter": {"reference": encounter},
        "authored": "2023-03-01T10:00:00Z",
        "item": [{"linkId": str(n), "answer": [{"valueInteger": 2}]} for n in range(1, 11)],
    }


def test_validate_says_findings_of_the_derived_score_as_such(client: TestClient) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    first = _create(client, _score("madrs", [3] * 10, patient, visit, "2023-03-01"))
    response = client.post(
        "/fhir/QuestionnaireResponse/$validate", json=_response(patient, visit), headers=FHIR
    )
    assert response.status_code == 200, response.text
    assert [i for i in response.json()["issue"] if i["code"] == "duplicate"] == [
        {
            "severity": "error",
            "code": "duplicate",
            "diagnostics": "In the Observation the server derives from this resource, at "
            f"Observation.code: MADRS is already scored for {patient} at {visit} ({first}): "
            "update that one to correct it",
        }
    ]


def test_validate_of_a_clean_response_reports_no_paths_outside_it(client: TestClient) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    response = client.post(
        "/fhir/QuestionnaireResponse/$validate", json=_response(patient, visit), headers=FHIR
    )
    assert response.status_code == 200, response.text
    issues = response.json()["issue"]
    assert all(
        e.startswith("QuestionnaireResponse") for i in issues for e in i.get("expression", [])
    )
    # the derived score's findings are said as such, as information
    derived = [i for i in issues if i["diagnostics"].startswith("In the Observation the server")]
    assert derived and {i["severity"] for i in derived} == {"information"}


def test_a_second_response_for_one_visit_is_refused_and_an_amended_one_corrects_it(
    client: TestClient,
) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    first = client.post(
        "/fhir/QuestionnaireResponse", json=_response(patient, visit), headers=FHIR
    ).json()
    again = client.post("/fhir/QuestionnaireResponse", json=_response(patient, visit), headers=FHIR)
    assert again.status_code == 422, again.text
    [issue] = again.json()["issue"]
    assert (issue["code"], issue.get("expression")) == ("duplicate", None)
    assert issue["diagnostics"].startswith("In the Observation the server derives from this")
    amended = {**first, "status": "amended"}
    amended["item"][0]["answer"] = [{"valueInteger": 5}]
    response = client.put(f"/fhir/QuestionnaireResponse/{first['id']}", json=amended, headers=FHIR)
    assert response.status_code == 200, response.text
    scores = client.get(f"/fhir/Observation?encounter={visit}").json()["entry"]
    assert [e["resource"]["valueQuantity"]["value"] for e in scores] == [23]


def test_a_score_without_a_severity_is_stored_with_the_band_of_its_total(
    client: TestClient,
) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    score = _score("madrs", [3] * 9 + [2], patient, visit, "2023-03-01")
    del score["interpretation"]
    stored = client.get(f"/fhir/{_create(client, score)}").json()
    assert [c["code"] for c in stored["interpretation"][0]["coding"]] == ["madrs-moderate"]


def test_a_score_with_the_wrong_severity_is_refused(client: TestClient) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    score = _score("madrs", [3] * 9 + [2], patient, visit, "2023-03-01")
    score["interpretation"][0]["coding"][0]["code"] = "madrs-severe"
    response = client.post("/fhir/Observation", json=score, headers=FHIR)
    assert response.status_code == 422, response.text
    errors = [i for i in _issues(response) if i[0] == "error"]
    assert errors == [("error", "invariant", ["Observation.interpretation[0].coding[0].code"])]


def test_a_total_over_nine_madrs_items_is_refused(client: TestClient) -> None:
    patient = _patient(client)
    visit = _create(client, _visit(client, patient, "baseline", "2023-03-01"))
    score = _score("madrs", [3] * 10, patient, visit, "2023-03-01")
    score["component"] = score["component"][:9]
    score["valueQuantity"]["value"] = 27
    del score["interpretation"]
    response = client.post("/fhir/Observation", json=score, headers=FHIR)
    assert response.status_code == 422, response.text
    errors = [i for i in _issues(response) if i[0] == "error"]
    assert errors == [("error", "invariant", ["Observation.valueQuantity.value"])]
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 0
