"""validate() returns issues, never raises, whatever JSON it is given."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_bridge.validation import Validator
from fhir_bridge.validation.engine import Context
from tests.validation.corpus import VALID, profile_resources

JUNK: list[Any] = [
    None,
    1,
    -1,
    2.5,
    True,
    "",
    "x",
    "#x",
    [],
    {},
    [None],
    [1],
    [[1]],
    [{}],
    {"a": 1},
    {"id": "x"},
    {"reference": 5},
    {"resourceType": 3},
    {"resourceType": "Patient", "foo": []},
    {"coding": {"code": 1}},
]

VALIDATOR = Validator()
VALIDATOR.add_profiles(profile_resources())


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    resource = copy.deepcopy(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(resource)[1:]))
        parent = resource
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(JUNK)))
    return resource


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_engine_never_raises_on_mutated_resources(resource: Any) -> None:
    # The engine itself, below validate()'s safety net, must cope with any JSON shape.
    ctx = Context(top=resource)
    VALIDATOR.engine.resource(resource, "X", ctx)
    assert all(issue.expression is not None for issue in ctx.issues)


@given(st.sampled_from(JUNK + [[{"resourceType": "Patient"}], "Patient"]))
def test_validate_returns_an_error_for_non_resources(value: Any) -> None:
    issues = VALIDATOR.validate(value)
    assert any(issue.is_error for issue in issues)


def test_a_rule_that_fails_on_one_resource_still_checks_the_next() -> None:
    # que-2 (linkIds unique) runs on fhirpathpy; this value makes that engine raise
    odd = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"code": [{"system": {"a": [[{}]]}}]}],
    }
    twice = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [{"linkId": "a", "type": "display"}, {"linkId": "a", "type": "display"}],
    }
    validator = Validator()
    assert any("que-2" in i.diagnostics for i in validator.validate(twice))
    validator.validate(odd)
    assert any("que-2" in i.diagnostics for i in validator.validate(twice))
