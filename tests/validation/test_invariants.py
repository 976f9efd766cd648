"""The fast forms of the score profiles' constraints agree with the FHIRPath evaluator."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from fhir_bridge.mapping.loader import load_mappings
from fhir_bridge.mapping.profiles import score_profile
from fhir_bridge.validation.invariants import ComponentSum, QuantityRange, compile_rule

MADRS = next(spec for spec in load_mappings().instruments if spec.id == "madrs")


def constraints() -> dict[str, str]:
    profile = score_profile(MADRS, load_mappings())
    root = profile["differential"]["element"][0]
    return {c["key"]: c["expression"] for c in root["constraint"]}


def score(total: Any = 12, items: list[Any] | None = None, **quantity: Any) -> dict[str, Any]:
    values = [1, 1, 1, 1, 2, 2, 1, 1, 1, 1] if items is None else items
    components = [
        {"code": {"text": f"item {n}"}, **({} if v is None else {"valueInteger": v})}
        for n, v in enumerate(values, 1)
    ]
    observation: dict[str, Any] = {"resourceType": "Observation", "component": components}
    if total is not None:
        observation["valueQuantity"] = {"value": total, **quantity}
    return observation


CASES = {
    "the sum": (score(12), True, True),
    "not the sum": (score(13), False, True),
    "a decimal equal to the sum": (score(12.0), True, True),
    "a decimal not the sum": (score(12.5), False, True),
    "no total": (score(None), True, True),
    "a total without a value": ({**score(None), "valueQuantity": {"unit": "{score}"}}, True, True),
    "above the range": (score(61, [6] * 10), False, False),
    "an item short": (score(99, [1] * 9), True, False),
    "an item without a value": (score(9, [None] + [1] * 9), True, True),
    "an item value that is a boolean": (score(12, [True] + [1] * 9), None, True),
    "an item value that is a string": (score(12, ["1"] + [1] * 9), None, True),
    "a total that is a string": (score("12"), None, None),
    "a component that is not an element": (
        {**score(12), "component": [*score(12)["component"][:9], "x"]},
        None,
        True,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_fast_forms_answer_as_the_fhirpath_evaluator(case: str) -> None:
    node, total_holds, range_holds = CASES[case]
    context = SimpleNamespace(resource=node, root=node)
    for key, expression in constraints().items():
        rule = compile_rule(key, expression, "Observation")
        assert isinstance(rule, (ComponentSum, QuantityRange)), key
        expected = total_holds if key.endswith("-total") else range_holds
        assert rule(node, context) == rule.general(node, context)
        if expected is not None:
            assert rule(node, context) is expected, key
