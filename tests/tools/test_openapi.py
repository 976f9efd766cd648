"""openapi.yaml is what the app serves: regenerate it with `python tools/write_openapi.py`."""

from __future__ import annotations

from tools.write_openapi import OPENAPI_PATH, render


def test_committed_openapi_matches_the_app() -> None:
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render()
