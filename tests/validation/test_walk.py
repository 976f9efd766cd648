"""The walk's cache of values already found valid never lets an invalid value through."""

from __future__ import annotations

from typing import Any

from fhir_bridge.domain.fhir_json import loads
from fhir_bridge.validation import Validator


def _component(value: Any) -> dict[str, Any]:
    return {"code": {"text": "item"}, "valueInteger": value}


def _observation(*values: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "score"},
        "component": [_component(v) for v in values],
    }


def _value_errors(validator: Validator, resource: dict[str, Any]) -> list[str]:
    return [
        str(i.expression)
        for i in validator.validate(resource)
        if i.is_error and i.code in ("value", "structure")
    ]


def test_a_boolean_is_no_integer_after_that_integer_was_valid() -> None:
    validator = Validator()
    assert _value_errors(validator, _observation(1, 0)) == []
    assert _value_errors(validator, _observation(True, 1, False)) == [
        "Observation.component[0].valueInteger",
        "Observation.component[2].valueInteger",
    ]


def test_an_integer_is_no_boolean_after_that_boolean_was_valid() -> None:
    validator = Validator()
    patient = {"resourceType": "Patient", "active": True}
    assert _value_errors(validator, patient) == []
    assert _value_errors(validator, {**patient, "active": 1}) == ["Patient.active"]


def test_a_valid_integer_stays_valid_when_seen_again() -> None:
    validator = Validator()
    for _ in range(2):
        assert _value_errors(validator, _observation(3, 2147483647)) == []
    assert _value_errors(validator, _observation(2147483648)) == [
        "Observation.component[0].valueInteger"
    ]


def test_an_id_of_dot_or_dot_dot_is_invalid_and_a_dotted_id_is_not() -> None:
    validator = Validator()
    for resource_id in (".", ".."):
        patient = {"resourceType": "Patient", "id": resource_id}
        assert _value_errors(validator, patient) == ["Patient.id"]
    assert _value_errors(validator, {"resourceType": "Patient", "id": "a.b..c"}) == []


def test_a_decimal_kept_as_sent_is_a_valid_decimal_and_no_integer() -> None:
    validator = Validator()
    body = b'{"value": 1.50, "big": 123456789012345678901234567890}'
    value, big = (loads(body)[k] for k in ("value", "big"))
    observation = {**_observation(1), "valueQuantity": {"value": value}}
    assert _value_errors(validator, observation) == []
    assert _value_errors(validator, _observation(big)) == ["Observation.component[0].valueInteger"]
