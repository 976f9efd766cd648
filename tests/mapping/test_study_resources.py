"""ResearchStudy, PlanDefinition visit schedule, Medication, CodeSystems and Questionnaires."""

from __future__ import annotations

from typing import Any

from fhir_bridge.mapping import Mappings


def _by_type(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == kind]


def test_research_study_carries_trial_identifiers(m: Mappings) -> None:
    [study] = _by_type(m.study_resources(), "ResearchStudy")
    assert [i["value"] for i in study["identifier"]] == ["2021-000805-26", "PSYKFORSK_MAT-MDD"]
    assert study["phase"]["coding"][0]["code"] == "phase-2"
    assert study["condition"][0]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "370143000",
        "display": "Major depressive disorder (disorder)",
    }
    assert study["protocol"] == [{"reference": "PlanDefinition/psykforsk-mat-mdd-schedule"}]


def test_plan_definition_has_one_action_per_visit_in_protocol_order(m: Mappings) -> None:
    [plan] = _by_type(m.study_resources(), "PlanDefinition")
    assert [a["prefix"] for a in plan["action"]] == [
        "Screening",
        "V0",
        "V1",
        "V2",
        "V3",
        "V4",
        "V5",
        "V6",
        "V7",
        "V8",
        "V9",
        "V10",
        "V11",
        "V12",
        "V13",
        "V14",
        "FU",
    ]
    post = next(a for a in plan["action"] if a["id"] == "post-treatment")
    assert post["relatedAction"][0]["actionId"] == "baseline"
    window = post["relatedAction"][0]["offsetRange"]
    assert (window["low"]["value"], window["high"]["value"]) == (70, 112)
    assert "https://fhir-bridge.org/fhir/Questionnaire/madrs" in [
        sub["definitionCanonical"] for sub in post["action"]
    ]


def test_medication_is_coded_by_unii(m: Mappings) -> None:
    [med] = _by_type(m.study_resources(), "Medication")
    assert med["code"] == {
        "coding": [{"system": "http://fdasis.nlm.nih.gov", "code": "KE1SEN21RM"}],
        "text": "midomafetamine (MDMA)",
    }


def test_code_systems_hold_project_codes_only(m: Mappings) -> None:
    systems = {cs["id"]: cs for cs in _by_type(m.conformance_resources(), "CodeSystem")}
    assessment = {c["code"] for c in systems["assessment"]["concept"]}
    assert {
        "madrs-total",
        "madrs-10",
        "sds-days-lost",
        "isi-7",
        "pcl5-20",
        "cssrs-ideation-severity",
        "madrs",  # the instrument's own code (Questionnaire.code), where LOINC has none
    } <= assessment
    assert not any(code[0].isdigit() for code in assessment)  # no LOINC codes copied in
    assert systems["assessment"]["count"] == len(assessment) == 11 + 6 + 8 + 20 + 1 + 4
    visits = [c["code"] for c in systems["visit"]["concept"]]
    assert visits[4] == "baseline" and len(visits) == 17
    assert {"madrs-moderate", "sds-impaired"} <= {c["code"] for c in systems["severity"]["concept"]}


def test_questionnaire_items_carry_codes_and_score_ranges(m: Mappings) -> None:
    questionnaires = {q["id"]: q for q in _by_type(m.conformance_resources(), "Questionnaire")}
    madrs_item = questionnaires["madrs"]["item"][0]
    assert madrs_item["type"] == "integer"
    assert [e["valueInteger"] for e in madrs_item["extension"]] == [0, 6]
    phq_item = questionnaires["phq9"]["item"][0]
    assert phq_item["code"] == [{"system": "http://loinc.org", "code": "44250-9"}]
    assert [o["extension"][0]["valueDecimal"] for o in phq_item["answerOption"]] == [0, 1, 2, 3]
    assert questionnaires["phq9"]["code"] == [{"system": "http://loinc.org", "code": "44249-1"}]
