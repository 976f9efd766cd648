"""The official SQL on FHIR v2 test suite (vendored in sql_on_fhir/): every case of every file,
run by the view runner. tests/api/test_view_run_suite.py runs them through the operation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.views import ViewDefinition, run
from tests.views.suite import EXPECTED_FAILURES, SUITE, assert_same_rows, cases


@pytest.mark.parametrize(("resources", "case"), cases())
def test_sql_on_fhir_case(resources: list[dict[str, Any]], case: dict[str, Any]) -> None:
    if case.get("expectError"):
        with pytest.raises(InvalidRequestError):
            list(run(case["view"], resources))
        return
    rows = list(run(case["view"], resources))
    if "expectColumns" in case:
        assert list(ViewDefinition.parse(case["view"]).columns) == case["expectColumns"]
        assert all(list(row) == case["expectColumns"] for row in rows)
    assert_same_rows(rows, case["expect"])


def test_only_cases_not_shareable_may_fail() -> None:
    tags = {}
    for path in SUITE.glob("*.json"):
        suite = json.loads(path.read_text())
        for case in suite["tests"]:
            tags[(path.name, case["title"])] = case.get("tags", []) + suite.get("tags", [])
    for key in EXPECTED_FAILURES:
        assert key in tags, key
        assert "shareable" not in tags[key], key
