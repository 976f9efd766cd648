"""What the validator remembers of values it has checked never changes a verdict."""

from __future__ import annotations

from typing import Any

from fhir_bridge.validation import Validator

EXTENSION = "http://example.org/fhir/StructureDefinition/visit-note"


def _observation(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **fields}


def _findings(validator: Validator, resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (i.severity, str(i.expression))
        for i in validator.validate(resource)
        if not i.diagnostics.startswith("dom-6")  # no narrative: a warning on every resource
    ]


def test_a_repeated_bad_value_is_reported_at_each_of_its_paths() -> None:
    validator = Validator()
    bad = {"coding": [{"system": 5, "code": "a"}]}
    resource = _observation(component=[{"code": bad}, {"code": bad}])
    expected = [
        ("error", "Observation.component[0].code.coding[0].system"),
        ("error", "Observation.component[1].code.coding[0].system"),
    ]
    assert _findings(validator, resource) == expected
    assert _findings(validator, resource) == expected  # the second time from memory


def test_a_repeated_warning_is_replayed_where_the_value_is() -> None:
    validator = Validator()
    interpretation = [{"coding": [{"system": "http://example.org/severity", "code": "high"}]}]
    first = _findings(validator, _observation(interpretation=interpretation))
    nested = _observation(component=[{"code": {"text": "i"}, "interpretation": interpretation}])
    assert first == [("warning", "Observation.interpretation[0]")]
    assert _findings(validator, nested) == [
        ("warning", "Observation.component[0].interpretation[0]")
    ]


def test_a_local_reference_is_checked_against_each_resources_contained() -> None:
    validator = Validator()
    performer = [{"reference": "#author"}]
    contained = [{"resourceType": "Practitioner", "id": "author"}]
    assert _findings(validator, _observation(performer=performer, contained=contained)) == []
    errors = _findings(validator, _observation(performer=performer))
    assert ("error", "Observation.performer[0]") in errors


def test_definitions_added_later_apply_to_values_seen_before() -> None:
    validator = Validator()
    resource = _observation(extension=[{"url": EXTENSION, "valueInteger": 3}])
    assert _findings(validator, resource) == []
    validator.add_profiles(
        [
            {
                "resourceType": "StructureDefinition",
                "url": EXTENSION,
                "name": "VisitNote",
                "status": "active",
                "kind": "complex-type",
                "abstract": False,
                "type": "Extension",
                "derivation": "constraint",
                "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
                "differential": {
                    "element": [
                        {"id": "Extension", "path": "Extension"},
                        {"id": "Extension.url", "path": "Extension.url", "fixedUri": EXTENSION},
                        {
                            "id": "Extension.value[x]",
                            "path": "Extension.value[x]",
                            "type": [{"code": "string"}],
                        },
                    ]
                },
            }
        ]
    )
    assert _findings(validator, resource) == [("error", "Observation.extension[0].valueInteger")]
