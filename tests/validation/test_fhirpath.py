"""The FHIRPath compiler agrees with fhirpathpy on the expressions invariants use."""

from __future__ import annotations

from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models

from fhir_bridge.validation.fhirpath import Unsupported, compile_fhirpath

RESOURCE: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "s", "code": "total"}]},
    "valueQuantity": {"value": 7, "system": "http://unitsofmeasure.org", "code": "{score}"},
    "component": [
        {"code": {"coding": [{"system": "s", "code": "a"}]}, "valueInteger": 3},
        {"code": {"coding": [{"system": "s", "code": "b"}]}, "valueInteger": 4},
        {"code": {"coding": [{"system": "t", "code": "c"}]}, "valueString": "x"},
    ],
}

EXPRESSIONS = [
    "status = 'final'",
    "status != 'final'",
    "component.count() = 3",
    "component.valueInteger.aggregate($this + $total, 0) = valueQuantity.value",
    "component.where(code.coding.exists((system = 's' and code = 'a') or "
    "(system = 's' and code = 'b'))).count()",
    "(component.where(code.coding.exists((system = 's' and code = 'a') or "
    "(system = 's' and code = 'b'))).count() = 2 and valueQuantity.exists()) implies "
    "(valueQuantity.value = component.where(code.coding.exists((system = 's' and code = 'a')"
    " or (system = 's' and code = 'b'))).valueInteger.aggregate($this + $total, 0))",
    "value.exists()",
    "dataAbsentReason.empty() or value.empty()",
    "valueQuantity.value > 0 and valueQuantity.value <= 60",
    "iif(component.valueInteger.first() > 2, 'high', 'low')",
    "component.all(code.exists())",
    "component.select(code.coding.code).isDistinct()",
    "(component.valueInteger | component.valueInteger).count()",
    "'a' in component.code.coding.code",
    "component.code.coding.code contains 'z'",
    "code.coding.code.startsWith('to')",
    "status.matches('^fi')",
    "valueQuantity.system = %ucum",
    "missing.empty() and missing.not().empty()",
    "status = 'final' xor status = 'x'",
    "component.valueString.first() & '-' & status",
    "-1 < component.valueInteger.first()",
    "component[1].valueInteger",
    "component.value.ofType(integer).count()",
    "component.tail().first().valueInteger = 4",
    "valueQuantity.value * component.valueInteger.first()",
    "valueQuantity.value / 2",
    "valueQuantity.value div 2",
    "-7 div 2",
    "7.5 mod 2",
    "valueQuantity.value / 0",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_compiled_expression_agrees_with_fhirpathpy(expression: str) -> None:
    expected = fhirpathpy.evaluate(RESOURCE, expression, {"resource": RESOURCE}, models["r4"])
    compiled = compile_fhirpath(expression)
    assert compiled(RESOURCE, {"resource": RESOURCE, "rootResource": RESOURCE}) == expected


@pytest.mark.parametrize(
    ("expression", "expected"), [("-7 mod 3", [-1]), ("7 mod -3", [1]), ("-7.5 mod 2", [-1.5])]
)
def test_mod_is_the_remainder_of_truncated_division(expression: str, expected: list[Any]) -> None:
    # https://hl7.org/fhirpath/N1/#mod (fhirpathpy floors integers: -7 mod 3 = 2 there)
    assert compile_fhirpath(expression)(RESOURCE, {}) == expected


@pytest.mark.parametrize("expression", ["descendants().count()", "value.as(Quantity)", "%vs-x"])
def test_outside_the_subset_is_refused_at_compile_time(expression: str) -> None:
    with pytest.raises(Unsupported):
        compile_fhirpath(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "component.where(code.coding.exists()).count()",
        "component.where(code.coding.exists(system = 's' and code = 'a')).valueInteger",
        "component.exists(code.coding.exists((system = 's' and code = 'a') or "
        "(system = 't' and code = 'c')))",
        "component.all(code.coding.exists((system = 's' and code = 'a') or "
        "(system = 's' and code = 'b')))",
        "component.valueInteger.aggregate($total + $this, 10)",
        "component.valueInteger.aggregate($this + $total)",
    ],
)
def test_fast_paths_agree_with_fhirpathpy(expression: str) -> None:
    expected = fhirpathpy.evaluate(RESOURCE, expression, {"resource": RESOURCE}, models["r4"])
    compiled = compile_fhirpath(expression)
    assert compiled(RESOURCE, {"resource": RESOURCE, "rootResource": RESOURCE}) == expected


ODD_CODINGS: dict[str, Any] = {
    "resourceType": "Observation",
    "component": [
        {"code": {"coding": {"system": "s", "code": "a"}}},
        {"code": {"coding": [{"system": "s"}, {"code": "b"}]}},
        {"code": {"coding": [{"system": "s", "code": 1}]}},
        {"code": {"coding": [{"system": "s", "code": "x"}, {"system": "s", "code": "b"}]}},
        {"code": [{"coding": [{"system": "s", "code": "a"}]}]},
        {"code": "a"},
    ],
}


@pytest.mark.parametrize(
    "expression",
    [
        "component.where(code.coding.exists((system = 's' and code = 'a') or "
        "(system = 's' and code = 'b'))).count()",
        "component.where(code.coding.exists((system = 's' and code = 1) or "
        "(system = 's' and code = 'b'))).count()",
        "component.exists(code.coding.exists((system = 's' and code = 'x') or "
        "(system = 't' and code = 'c')))",
    ],
)
def test_code_table_shortcuts_agree_with_fhirpathpy_on_odd_shapes(expression: str) -> None:
    env = {"resource": ODD_CODINGS, "rootResource": ODD_CODINGS}
    expected = fhirpathpy.evaluate(ODD_CODINGS, expression, {"resource": ODD_CODINGS})
    assert compile_fhirpath(expression)(ODD_CODINGS, env) == expected
