"""The body-shape budget: what is over it is refused naming the element, before any work."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_bridge.domain.cost import Limits, check_shape
from fhir_bridge.errors import PayloadTooLargeError

SMALL = Limits(max_contained=3, max_references=4, max_array_items=5, max_depth=6)


def refusal(body: Any, limits: Limits = SMALL) -> tuple[str, str | None, str]:
    with pytest.raises(PayloadTooLargeError) as caught:
        check_shape(body, limits)
    issue = caught.value.issues[0]
    return issue.diagnostics, issue.expression, issue.code


def contained(n: int) -> list[dict[str, Any]]:
    return [{"resourceType": "Organization", "id": f"o{i}"} for i in range(n)]


def test_a_body_within_budget_passes() -> None:
    body = {
        "resourceType": "Patient",
        "contained": contained(3),
        "generalPractitioner": [{"reference": f"#o{i}"} for i in range(3)],
    }
    check_shape(body, SMALL)


def test_too_many_contained_resources_are_refused_naming_the_element() -> None:
    body = {"resourceType": "Patient", "contained": contained(4)}
    assert refusal(body) == (
        "The body has more than 3 contained resources",
        "Patient.contained",
        "too-costly",
    )


def test_too_many_references_are_refused_naming_the_one_over() -> None:
    body = {
        "resourceType": "Patient",
        "generalPractitioner": [{"reference": f"Organization/o{i}"} for i in range(5)],
    }
    assert refusal(body, Limits(max_references=4)) == (
        "The body has more than 4 references",
        "Patient.generalPractitioner[4].reference",
        "too-costly",
    )


def test_a_long_array_is_refused_naming_it() -> None:
    body = {"resourceType": "Patient", "name": [{"given": ["a"] * 6}]}
    assert refusal(body) == (
        "An array has 6 items; the limit is 5",
        "Patient.name[0].given",
        "too-costly",
    )


def test_deep_nesting_is_refused_naming_where() -> None:
    node: dict[str, Any] = {}
    body = {"resourceType": "Questionnaire", "item": [node]}
    for _ in range(3):
        inner: dict[str, Any] = {}
        node["item"] = [inner]
        node = inner
    assert refusal(body) == (
        "The body nests deeper than 6 levels",
        "Questionnaire.item[0].item[0].item[0]",
        "too-costly",
    )


def test_a_bundle_counts_its_entries_together() -> None:
    entry = {"resource": {"resourceType": "Patient", "contained": contained(2)}}
    body = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    assert refusal(body) == (
        "The body has more than 3 contained resources",
        "Bundle.entry[1].resource.contained",
        "too-costly",
    )


def test_bundle_entries_are_bounded_by_the_entry_limit_not_the_array_limit() -> None:
    entries = [{"resource": {"resourceType": "Basic"}} for _ in range(6)]
    check_shape({"resourceType": "Bundle", "type": "batch", "entry": entries}, SMALL)
