"""The official SQL on FHIR v2 test suite (vendored in sql_on_fhir/): its cases, and rows
compared as the suite's own runner compares them (in any order; values must match in JSON type
too: true is not 1). https://github.com/FHIR/sql-on-fhir-v2/tree/master/tests
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SUITE = Path(__file__).parent / "sql_on_fhir"
# (file, title) -> why the case fails; only cases not tagged shareable may be listed.
EXPECTED_FAILURES: dict[tuple[str, str], str] = {}


def cases() -> list[Any]:
    """A pytest param (resources, case) per case of every file, named by file and title."""
    found = []
    for path in sorted(SUITE.glob("*.json")):
        suite = json.loads(path.read_text())
        for case in suite["tests"]:
            reason = EXPECTED_FAILURES.get((path.name, case["title"]))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            found.append(
                pytest.param(
                    suite["resources"], case, id=f"{path.name}: {case['title']}", marks=marks
                )
            )
    return found


def same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    return type(actual) is type(expected) and bool(actual == expected)


def same_row(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    return actual.keys() == expected.keys() and all(same(actual[k], expected[k]) for k in actual)


def assert_same_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    unmatched = list(actual)
    for row in expected:
        match = next((n for n, candidate in enumerate(unmatched) if same_row(candidate, row)), None)
        assert match is not None, f"expected row {row} not in {actual}"
        del unmatched[match]
    assert not unmatched, f"unexpected rows {unmatched}"
