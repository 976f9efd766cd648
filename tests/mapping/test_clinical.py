"""Clinical rules on directly posted resources: ranges, total = items, protocol visits, doses."""

from __future__ import annotations

from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.mapping import Mappings, check_clinical, interpret
from fhir_bridge.mapping.clinical import mdma_dose, session_dose_findings
from fhir_bridge.mapping.observations import score_observation, study_extension

VISIT = "https://fhir-bridge.org/fhir/CodeSystem/visit"


def _madrs(m: Mappings, scores: list[int], total: int | None) -> dict[str, Any]:
    spec = m.instrument("madrs")
    values = {item.link_id: s for item, s in zip(spec.items, scores, strict=True)}
    return score_observation(spec, values, total, subject="Patient/p1", effective="2023-03-01")


def _found(issues: list[Any]) -> list[tuple[str, str, str | None]]:
    return [(i.severity, i.code, i.expression) for i in issues]


def test_consistent_score_observation_has_no_issues(m: Mappings) -> None:
    assert check_clinical(_madrs(m, [3] * 10, 30), m) == []


def test_total_not_sum_of_items_is_an_invariant_error(m: Mappings) -> None:
    [issue] = check_clinical(_madrs(m, [3] * 10, 31), m)
    assert (issue.severity, issue.code, issue.expression) == (
        "error",
        "invariant",
        "Observation.valueQuantity.value",
    )
    assert "not the sum of the items (30)" in issue.diagnostics


def test_item_out_of_range_is_named_by_component_path(m: Mappings) -> None:
    obs = _madrs(m, [3] * 10, 30)
    obs["component"][2]["valueInteger"] = 9
    assert _found(check_clinical(obs, m)) == [
        ("error", "business-rule", "Observation.component[2].valueInteger")
    ]


def test_an_item_sent_twice_is_reported_each_time_it_is_seen(m: Mappings) -> None:
    # the second time the components are known valid items: the rule still counts them
    for _ in range(2):
        obs = _madrs(m, [3] * 10, 30)
        obs["component"][1] = dict(obs["component"][0])
        issues = [i for i in check_clinical(obs, m) if i.code == "business-rule"]
        assert [(i.expression, i.diagnostics) for i in issues] == [
            ("Observation.component[1]", "MADRS item 1 appears twice")
        ]


def test_total_out_of_range_is_rejected(m: Mappings) -> None:
    obs = _madrs(m, [3] * 10, 30)
    del obs["component"]
    obs["valueQuantity"]["value"] = 61
    assert _found(check_clinical(obs, m)) == [
        ("error", "business-rule", "Observation.valueQuantity.value")
    ]


def test_total_without_items_is_accepted(m: Mappings) -> None:
    obs = _madrs(m, [3] * 10, 30)
    del obs["component"]
    assert check_clinical(obs, m) == []


def test_a_total_over_missing_items_is_refused(m: Mappings) -> None:
    obs = _madrs(m, [3] * 10, 27)
    obs["component"] = obs["component"][:9]
    [issue] = check_clinical(obs, m)
    assert issue == Issue(
        "error",
        "invariant",
        "MADRS item(s) 10 missing: an incomplete administration has no total "
        "(its scoring rules define no prorating)",
        "Observation.valueQuantity.value",
    )


def test_a_total_far_from_its_partial_items_is_refused(m: Mappings) -> None:
    obs = _madrs(m, [3] * 10, 58)
    obs["component"] = obs["component"][1:]
    assert _found(check_clinical(obs, m)) == [
        ("error", "invariant", "Observation.valueQuantity.value")
    ]


def test_partial_items_without_a_total_are_accepted(m: Mappings) -> None:
    obs = _madrs(m, [3] * 9 + [0], None)
    obs["component"] = obs["component"][:9]
    assert check_clinical(obs, m) == []


def test_sds_total_needs_only_the_three_domain_items(m: Mappings) -> None:
    spec = m.instrument("sds")
    values = {"1": 4, "2": 5, "3": 6}
    obs = score_observation(spec, values, 15, subject="Patient/p1", effective="2023-03-01")
    assert check_clinical(obs, m) == []


def test_a_severity_that_is_not_the_band_of_the_total_is_refused(m: Mappings) -> None:
    obs = _madrs(m, [3] * 9 + [2], 29)
    obs["interpretation"][0]["coding"][0]["code"] = "madrs-severe"
    [issue] = check_clinical(obs, m)
    assert issue == Issue(
        "error",
        "invariant",
        "MADRS interpretation 'madrs-severe' does not match the score: it is 'madrs-moderate' "
        "(Moderate depression)",
        "Observation.interpretation[0].coding[0].code",
    )


def test_a_severity_is_set_when_the_score_has_none(m: Mappings) -> None:
    obs = _madrs(m, [3] * 9 + [2], 29)
    del obs["interpretation"]
    [interpretation] = interpret(obs, m)["interpretation"]
    assert interpretation["coding"][0]["code"] == "madrs-moderate"
    assert "interpretation" not in obs  # a copy: the posted resource is left alone


def test_unknown_component_code_is_rejected(m: Mappings) -> None:
    obs = _madrs(m, [3] * 10, 30)
    obs["component"][0]["code"] = {"coding": [{"system": "http://loinc.org", "code": "44250-9"}]}
    assert _found(check_clinical(obs, m)) == [
        ("error", "code-invalid", "Observation.component[0].code")
    ]


def test_cssrs_total_must_be_highest_positive_level(m: Mappings) -> None:
    spec = m.instrument("cssrs")
    values = {"1": 1, "2": 1, "3": 0, "4": 0, "5": 0}
    good = score_observation(spec, values, 2, subject="Patient/p1", effective="2023-03-01")
    bad = score_observation(spec, values, 3, subject="Patient/p1", effective="2023-03-01")
    assert check_clinical(good, m) == []
    assert _found(check_clinical(bad, m)) == [
        ("error", "invariant", "Observation.valueQuantity.value")
    ]


def _encounter(code: str, *, in_study: bool = True) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"coding": [{"system": VISIT, "code": code}]}],
    }
    if in_study:
        enc["extension"] = [study_extension("ResearchStudy/psykforsk-mat-mdd")]
    return enc


def test_protocol_visit_is_accepted(m: Mappings) -> None:
    assert check_clinical(_encounter("dosing-2"), m) == []


def test_visit_outside_the_protocol_is_rejected(m: Mappings) -> None:
    assert _found(check_clinical(_encounter("dosing-3"), m)) == [
        ("error", "code-invalid", "Encounter.type[0].coding[0].code")
    ]


def test_study_encounter_without_visit_type_is_rejected(m: Mappings) -> None:
    enc = _encounter("baseline")
    enc["type"] = [{"text": "outpatient"}]
    assert _found(check_clinical(enc, m)) == [("error", "business-rule", "Encounter.type")]


def _administration(dose: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://fdasis.nlm.nih.gov", "code": "KE1SEN21RM"}]
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2023-03-08T09:00:00Z",
        "dosage": {"dose": dose},
    }


def test_mdma_dose_in_mg_is_accepted(m: Mappings) -> None:
    dose = {"value": 120, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert check_clinical(_administration(dose), m) == []


def test_mdma_dose_not_in_mg_is_rejected(m: Mappings) -> None:
    dose = {"value": 0.12, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"}
    assert _found(check_clinical(_administration(dose), m)) == [
        ("error", "business-rule", "MedicationAdministration.dosage.dose.code")
    ]


def test_one_mdma_dose_above_the_session_maximum_is_left_to_the_session_rule(
    m: Mappings,
) -> None:
    dose = {"value": 250, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    admin = _administration(dose)
    assert check_clinical(admin, m) == []
    issues, tags = session_dose_findings(admin, mdma_dose(admin, m) or 0, m)
    assert _found(issues) == [
        ("warning", "business-rule", "MedicationAdministration.dosage.dose.value")
    ]
    assert [t["code"] for t in tags] == ["dose-above-session-maximum"]


def test_a_dose_not_given_counts_for_nothing(m: Mappings) -> None:
    dose = {"value": 120, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert mdma_dose({**_administration(dose), "status": "not-done"}, m) is None
    assert mdma_dose(_administration(dose), m) == 120


def test_a_medication_named_mdma_with_another_unii_is_refused(m: Mappings) -> None:
    medication = {
        "resourceType": "Medication",
        "code": {
            "coding": [{"system": "http://fdasis.nlm.nih.gov", "code": "XXXXXXXXXX"}],
            "text": "mdma",
        },
    }
    assert check_clinical(medication, m) == [
        Issue(
            "error",
            "code-invalid",
            "a Medication named midomafetamine (MDMA) must be coded "
            "http://fdasis.nlm.nih.gov|KE1SEN21RM (its UNII)",
            "Medication.code",
        )
    ]


def test_the_study_medication_passes_its_rule(m: Mappings) -> None:
    [medication] = [r for r in m.study_resources() if r["resourceType"] == "Medication"]
    assert check_clinical(medication, m) == []


def test_a_visit_in_the_future_is_refused(m: Mappings) -> None:
    enc = _encounter("baseline")
    enc["period"] = {"start": "2999-01-01"}
    assert _found(check_clinical(enc, m)) == [("error", "business-rule", "Encounter.period.start")]


def test_response_answers_are_checked_when_posted(m: Mappings) -> None:
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "questionnaire": "https://fhir-bridge.org/fhir/Questionnaire/isi",
        "item": [{"linkId": "1", "answer": [{"valueInteger": 5}]}],
    }
    assert _found(check_clinical(qr, m)) == [
        ("error", "value", "QuestionnaireResponse.item[0].answer[0].valueInteger")
    ]


def test_resources_without_rules_give_no_issues(m: Mappings) -> None:
    assert check_clinical({"resourceType": "Patient", "gender": "female"}, m) == []
    other = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    }
    assert check_clinical(other, m) == []
