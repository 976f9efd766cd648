"""Which profiles apply to a resource, and profiles built on registered profiles."""

from __future__ import annotations

import copy
from typing import Any

from fhir_bridge.validation import Validator
from tests.validation.corpus import CANONICAL, OBSERVATION, SCORE_PROFILE, profile_resources


def _validator() -> Validator:
    validator = Validator()
    validator.add_profiles(profile_resources())
    return validator


def _score_profile() -> dict[str, Any]:
    return copy.deepcopy(next(r for r in profile_resources() if r.get("url") == SCORE_PROFILE))


def _errors(validator: Validator, resource: dict[str, Any], *profiles: str) -> list[str]:
    return [
        f"{i.code} {i.expression}" for i in validator.validate(resource, profiles) if i.is_error
    ]


def test_unknown_claimed_profile_is_a_warning_only() -> None:
    obs = copy.deepcopy(OBSERVATION)
    obs["meta"]["profile"] = [f"{CANONICAL}/StructureDefinition/unknown"]
    issues = Validator().validate(obs)
    assert [(i.severity, i.code, i.expression) for i in issues if i.code == "processing"] == [
        ("warning", "processing", "Observation.meta.profile[0]")
    ]


def test_profile_is_mandated_by_its_code_without_a_claim() -> None:
    obs = copy.deepcopy(OBSERVATION)
    del obs["meta"]
    obs["valueInteger"] = 8
    assert _errors(_validator(), obs) == ["invariant Observation"]


def test_other_codes_are_not_held_to_the_profile() -> None:
    obs = copy.deepcopy(OBSERVATION)
    del obs["meta"]
    obs["code"]["coding"][0]["code"] = "something-else"
    obs["valueInteger"] = 8
    assert _errors(_validator(), obs) == []


def test_reregistered_profile_mandates_only_its_new_code() -> None:
    validator = _validator()
    changed = _score_profile()
    changed["differential"]["element"][1]["patternCodeableConcept"]["coding"][0]["code"] = "x"
    validator.add_profiles([changed])
    obs = copy.deepcopy(OBSERVATION)
    del obs["meta"]
    obs["valueInteger"] = 8
    assert _errors(validator, obs) == []


def test_profile_given_with_a_snapshot_is_used_as_is() -> None:
    validator = Validator()
    with_snapshot = validator.snapshot(_score_profile())
    validator.add_profiles([with_snapshot])
    obs = copy.deepcopy(OBSERVATION)
    obs["component"][0]["valueInteger"] = 9
    obs["valueInteger"] = 13
    assert "value Observation.component[0].valueInteger" in _errors(validator, obs)


def test_profile_on_a_registered_profile_inherits_its_constraints() -> None:
    child = {
        "resourceType": "StructureDefinition",
        "url": f"{CANONICAL}/StructureDefinition/test-score-strict",
        "name": "TestScoreStrict",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Observation",
        "baseDefinition": SCORE_PROFILE,
        "derivation": "constraint",
        "differential": {
            "element": [{"id": "Observation.note", "path": "Observation.note", "min": 1}]
        },
    }
    validator = Validator()
    validator.add_profiles([child, *profile_resources()])  # order does not matter
    obs = copy.deepcopy(OBSERVATION)
    del obs["note"]
    obs["valueInteger"] = 8
    errors = _errors(validator, obs, child["url"])
    assert "required Observation.note" in errors
    assert "invariant Observation" in errors


def test_project_extension_definitions_check_value_types() -> None:
    definition = {
        "resourceType": "StructureDefinition",
        "url": f"{CANONICAL}/StructureDefinition/dose-role",
        "name": "DoseRole",
        "status": "draft",
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": "MedicationAdministration"}],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {
            "element": [
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": "x"},
                {
                    "id": "Extension.value[x]",
                    "path": "Extension.value[x]",
                    "type": [{"code": "code"}],
                },
            ]
        },
    }
    validator = Validator()
    validator.add_profiles([definition])
    obs = copy.deepcopy(OBSERVATION)
    obs["extension"] = [{"url": definition["url"], "valueString": "initial"}]
    assert "structure Observation.extension[0].valueString" in _errors(validator, obs)
    obs["extension"] = [{"url": definition["url"], "valueCode": "initial"}]
    assert _errors(validator, obs) == []


def test_compiled_patterns_match_like_the_reference_function() -> None:
    from fhir_bridge.validation.slicing import compile_pattern, matches_pattern

    pattern = {"coding": [{"system": "s", "code": "a"}], "text": "t"}
    values = [
        {"coding": [{"system": "s", "code": "a", "display": "A"}], "text": "t"},
        {"coding": [{"system": "x", "code": "b"}, {"system": "s", "code": "a"}], "text": "t"},
        {"coding": [{"system": "s", "code": "b"}], "text": "t"},
        {"coding": {"system": "s", "code": "a"}, "text": "t"},
        {"coding": [{"system": "s", "code": "a"}]},
        "s",
        [pattern],
    ]
    matcher = compile_pattern(pattern)
    assert [matcher(v) for v in values] == [matches_pattern(v, pattern) for v in values]
    assert [matcher(v) for v in values] == [True, True, False, True, False, False, False]


def test_slicing_by_value_on_code_coding() -> None:
    assessment = f"{CANONICAL}/CodeSystem/assessment"
    profile = {
        "resourceType": "StructureDefinition",
        "url": f"{CANONICAL}/StructureDefinition/test-coding-slices",
        "name": "TestCodingSlices",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {
            "element": [
                {
                    "id": "Observation.component",
                    "path": "Observation.component",
                    "slicing": {
                        "discriminator": [{"type": "value", "path": "code.coding"}],
                        "rules": "open",
                    },
                },
                {
                    "id": "Observation.component:first",
                    "path": "Observation.component",
                    "sliceName": "first",
                    "min": 1,
                    "max": "1",
                },
                {
                    "id": "Observation.component:first.code.coding",
                    "path": "Observation.component.code.coding",
                    "patternCoding": {"system": assessment, "code": "test-1"},
                },
                {
                    "id": "Observation.component:first.value[x]",
                    "path": "Observation.component.value[x]",
                    "maxValueInteger": 3,
                },
            ]
        },
    }
    validator = Validator()
    validator.add_profiles([profile])
    obs = copy.deepcopy(OBSERVATION)
    del obs["meta"]
    assert _errors(validator, obs, profile["url"]) == []
    obs["component"][0]["valueInteger"] = 5
    assert _errors(validator, obs, profile["url"]) == [
        "value Observation.component[0].valueInteger"
    ]
    del obs["component"][0]
    assert _errors(validator, obs, profile["url"]) == ["required Observation.component"]


def test_extension_slices_are_recognised_by_url() -> None:
    study = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
    profile = {
        "resourceType": "StructureDefinition",
        "url": f"{CANONICAL}/StructureDefinition/test-study-link",
        "name": "TestStudyLink",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {
            "element": [
                {
                    "id": "Observation.extension",
                    "path": "Observation.extension",
                    "slicing": {
                        "discriminator": [{"type": "value", "path": "url"}],
                        "rules": "open",
                    },
                },
                {
                    "id": "Observation.extension:study",
                    "path": "Observation.extension",
                    "sliceName": "study",
                    "min": 1,
                    "max": "1",
                    "type": [{"code": "Extension", "profile": [study]}],
                },
            ]
        },
    }
    validator = Validator()
    validator.add_profiles([profile])
    obs = copy.deepcopy(OBSERVATION)
    del obs["meta"]
    link = {"url": study, "valueReference": {"reference": "ResearchStudy/s1"}}
    other = {"url": "http://example.org/other", "valueString": "x"}
    obs["extension"] = [other, link, other]
    assert _errors(validator, obs, profile["url"]) == []
    obs["extension"] = [other]
    assert _errors(validator, obs, profile["url"]) == ["required Observation.extension"]
    obs["extension"] = [link, other, link]
    assert _errors(validator, obs, profile["url"]) == ["value Observation.extension[2]"]


def test_profile_value_checks_hold_for_values_seen_before() -> None:
    from fhir_bridge.mapping.loader import load_mappings
    from fhir_bridge.mapping.observations import score_observation

    mappings = load_mappings()
    validator = Validator()
    validator.add_profiles(mappings.conformance_resources())
    spec = mappings.instrument("madrs")
    values = {item.link_id: 2 for item in spec.items}
    obs = score_observation(spec, values, 20, subject="Patient/p1", effective="2026-03-01")

    def range_errors() -> list[str]:
        return [
            str(i.expression)
            for i in validator.validate(obs)
            if "above the maximum" in i.diagnostics
        ]

    for value, expected in [(2, []), (9, ["Observation.component[0].valueInteger"]), (2, [])]:
        obs["component"][0]["valueInteger"] = value
        assert range_errors() == expected
    for _ in range(2):
        obs["component"][1]["valueInteger"] = 9
        assert range_errors() == ["Observation.component[1].valueInteger"]
