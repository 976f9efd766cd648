"""Narrative XHTML rules (txt-1, txt-2) on the write path's validator."""

from __future__ import annotations

import pytest

from fhir_bridge.validation import get_validator

NS = 'xmlns="http://www.w3.org/1999/xhtml"'


def narrative_errors(div: str) -> list[str]:
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    return [
        f"{i.expression}: {i.diagnostics}"
        for i in get_validator().validate(patient)
        if i.severity == "error"
    ]


@pytest.mark.parametrize(
    "div",
    [
        f"<div {NS}><script>alert(1)</script></div>",
        f'<div {NS}><img src="x" onerror="alert(2)"/></div>',
        f'<div {NS}><iframe src="http://evil.example"/></div>',
        f'<div {NS}><a href="javascript:alert(3)">x</a></div>',
        f"<div {NS}></div>",
        f"<div {NS}><p>unclosed</div>",
    ],
    ids=["script", "event-handler", "iframe", "javascript-link", "empty", "malformed"],
)
def test_unsafe_or_empty_narrative_is_an_error(div: str) -> None:
    found = narrative_errors(div)
    assert found and all(f.startswith("Patient.text.div") for f in found)


def test_ordinary_narrative_passes() -> None:
    div = (
        f'<div {NS}><p>Participant <b>MDD-01</b></p><table border="1"><tr><td>'
        f'<a href="https://example.org">link</a></td></tr></table><img src="a.png" alt="x"/></div>'
    )
    assert narrative_errors(div) == []
