"""What the validator remembers of values it has checked never changes a verdict."""

from __future__ import annotations

from typing import Any

from fhir_bridge.validation import Validator

EXTENSION = "http://example.org/fhir/StructureDefinition/visit-note"
TYPED = "http://example.org/fhir/StructureDefinition/typed-value"


def _typed_value_profile() -> dict[str, Any]:
    """Observation.value[x] sliced by type (closed), one slice: valueString (type string)."""
    return {
        "resourceType": "StructureDefinition",
        "url": TYPED,
        "name": "TypedValue",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Observation",
        "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "differential": {
            "element": [
                {"id": "Observation", "path": "Observation"},
                {
                    "id": "Observation.value[x]",
                    "path": "Observation.value[x]",
                    "slicing": {
                        "discriminator": [{"type": "type", "path": "$this"}],
                        "rules": "closed",
                    },
                },
                {
                    "id": "Observation.value[x]:valueString",
                    "path": "Observation.value[x]",
                    "sliceName": "valueString",
                    "type": [{"code": "string"}],
                },
            ]
        },
    }


def _typed_observation(**value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "meta": {"profile": [TYPED]},
        "status": "final",
        "code": {"text": "x"},
        **value,
    }


def _typed_errors(validator: Validator, resource: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(i.code, i.expression) for i in validator.validate(resource) if i.is_error]


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


def test_a_sliced_choice_value_seen_under_another_type_is_still_type_checked() -> None:
    """conformance.py slicer: the slice memo is keyed by the value alone, not by its JSON key,
    so "2020-01-01" remembered as a valid valueString member lets valueDateTime "2020-01-01"
    skip the slice's type check."""
    fresh = Validator()
    fresh.add_profiles([_typed_value_profile()])
    expected = _typed_errors(fresh, _typed_observation(valueDateTime="2020-01-01"))
    assert expected, "a fresh validator refuses the dateTime in the string-only slice"

    warm = Validator()
    warm.add_profiles([_typed_value_profile()])
    assert _typed_errors(warm, _typed_observation(valueString="2020-01-01")) == []
    assert _typed_errors(warm, _typed_observation(valueDateTime="2020-01-01")) == expected


def test_a_nan_decimal_is_not_reported_as_the_null_seen_before() -> None:
    """memo.py Memo.key: orjson writes NaN and Infinity as `null`, so {"value": NaN} shares its
    key with {"value": null} and gets the null's remembered diagnostics replayed (Python callers
    of Validator.validate can pass json.loads output, which holds NaN)."""

    def observation(quantity: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": quantity,
        }

    def diagnostics(validator: Validator, resource: dict[str, Any]) -> list[str]:
        return [i.diagnostics for i in validator.validate(resource) if i.is_error]

    nan = observation({"value": float("nan"), "unit": "mg"})
    expected = diagnostics(Validator(), nan)
    warm = Validator()
    diagnostics(warm, observation({"value": None, "unit": "mg"}))
    assert diagnostics(warm, nan) == expected
