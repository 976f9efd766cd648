"""ConceptMap translation of a hospital's local codes on ingest."""

from __future__ import annotations

import orjson

from fhir_bridge.domain.fhir import parse_model
from fhir_bridge.mapping import Mappings, check_clinical, may_translate, translate_codes

LOCAL = "http://ehr.example.org/fhir/CodeSystem/local-assessment"
PROJECT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"


def _local_observation() -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOCAL, "code": "MADRS-TOT", "display": "MADRS sum"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2023-03-01",
        "valueQuantity": {"value": 12, "system": "http://unitsofmeasure.org", "code": "{score}"},
        "component": [
            {"code": {"coding": [{"system": LOCAL, "code": "MADRS-01"}]}, "valueInteger": 2}
        ],
    }


def test_local_code_gains_project_coding_and_keeps_original(m: Mappings) -> None:
    translated = translate_codes(_local_observation(), m)
    assert translated["code"]["coding"] == [
        {"system": LOCAL, "code": "MADRS-TOT", "display": "MADRS sum"},
        {"system": PROJECT, "code": "madrs-total", "display": "MADRS total score"},
    ]
    assert translated["component"][0]["code"]["coding"][1]["code"] == "madrs-1"
    parse_model(translated)


def test_a_body_without_a_source_system_or_escapes_needs_no_translation(m: Mappings) -> None:
    local = orjson.dumps({"entry": [{"resource": _local_observation()}]})
    project = local.replace(LOCAL.encode(), PROJECT.encode())
    assert may_translate(local, m)
    assert not may_translate(project, m)
    # an escape may spell a source system in other bytes: the body cannot rule it out
    escaped = local.replace(b"http://", b"http:\\/\\/")
    assert LOCAL.encode() not in escaped and orjson.loads(escaped) == orjson.loads(local)
    assert may_translate(escaped, m)
    assert may_translate(project.replace(b"}", b', "note": "a \\"quoted\\" word"}', 1), m)


def test_translation_leaves_the_input_unchanged(m: Mappings) -> None:
    original = _local_observation()
    translate_codes(original, m)
    assert original == _local_observation()


def test_translation_is_idempotent(m: Mappings) -> None:
    once = translate_codes(_local_observation(), m)
    assert translate_codes(once, m) == once


def test_translated_observation_is_checked_by_clinical_rules(m: Mappings) -> None:
    assert check_clinical(_local_observation(), m) == []
    translated = translate_codes(_local_observation(), m)
    translated["component"][0]["valueInteger"] = 8
    [issue] = check_clinical(translated, m)
    assert issue.expression == "Observation.component[0].valueInteger"


def test_local_visit_code_is_translated_on_encounter_type(m: Mappings) -> None:
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [
            {
                "coding": [
                    {
                        "system": "http://ehr.example.org/fhir/CodeSystem/local-visit",
                        "code": "MDD-DOSE1",
                    }
                ]
            }
        ],
    }
    coding = translate_codes(enc, m)["type"][0]["coding"]
    assert coding[1] == {
        "system": "https://fhir-bridge.org/fhir/CodeSystem/visit",
        "code": "dosing-1",
        "display": "Experimental session 1, MDMA (V5)",
    }


def test_unmapped_codes_are_left_alone(m: Mappings) -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOCAL, "code": "HAMD-TOT"}]},
    }
    assert translate_codes(obs, m) == obs


def test_concept_map_resource_lists_each_local_code(m: Mappings) -> None:
    [cm] = [r for r in m.conformance_resources() if r["resourceType"] == "ConceptMap"]
    first = cm["group"][0]["element"][0]
    assert first == {
        "code": "MADRS-TOT",
        "display": "MADRS sum",
        "target": [{"code": "madrs-total", "equivalence": "equivalent"}],
    }
    parse_model(cm)
