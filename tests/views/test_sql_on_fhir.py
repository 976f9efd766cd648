"""The official SQL on FHIR v2 test suite (vendored in sql_on_fhir/): every case of every file.

Rows are compared in any order, as the suite's own runner compares them; values must match in
JSON type too (true is not 1). https://github.com/FHIR/sql-on-fhir-v2/tree/master/tests
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.views import ViewDefinition, run

SUITE = Path(__file__).parent / "sql_on_fhir"
# (file, title) -> why the case fails; only cases not tagged shareable may be listed.
EXPECTED_FAILURES: dict[tuple[str, str], str] = {}


def _cases() -> list[Any]:
    cases = []
    for path in sorted(SUITE.glob("*.json")):
        suite = json.loads(path.read_text())
        for case in suite["tests"]:
            reason = EXPECTED_FAILURES.get((path.name, case["title"]))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(
                pytest.param(
                    suite["resources"], case, id=f"{path.name}: {case['title']}", marks=marks
                )
            )
    return cases


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(map(_same, actual, expected))
    return type(actual) is type(expected) and bool(actual == expected)


def _same_row(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    return actual.keys() == expected.keys() and all(_same(actual[k], expected[k]) for k in actual)


def _assert_same_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    unmatched = list(actual)
    for row in expected:
        match = next(
            (n for n, candidate in enumerate(unmatched) if _same_row(candidate, row)), None
        )
        assert match is not None, f"expected row {row} not in {actual}"
        del unmatched[match]
    assert not unmatched, f"unexpected rows {unmatched}"


@pytest.mark.parametrize(("resources", "case"), _cases())
def test_sql_on_fhir_case(resources: list[dict[str, Any]], case: dict[str, Any]) -> None:
    if case.get("expectError"):
        with pytest.raises(InvalidRequestError):
            list(run(case["view"], resources))
        return
    rows = list(run(case["view"], resources))
    if "expectColumns" in case:
        assert list(ViewDefinition.parse(case["view"]).columns) == case["expectColumns"]
        assert all(list(row) == case["expectColumns"] for row in rows)
    _assert_same_rows(rows, case["expect"])


def test_only_cases_not_shareable_may_fail() -> None:
    tags = {}
    for path in SUITE.glob("*.json"):
        suite = json.loads(path.read_text())
        for case in suite["tests"]:
            tags[(path.name, case["title"])] = case.get("tags", []) + suite.get("tags", [])
    for key in EXPECTED_FAILURES:
        assert key in tags, key
        assert "shareable" not in tags[key], key
