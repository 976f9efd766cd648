"""Writes openapi.yaml from the application's routes: `python tools/write_openapi.py`."""

from __future__ import annotations

from pathlib import Path

import yaml

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


def render() -> str:
    app = create_app(Settings(database_url="sqlite:///unused.db"))
    return yaml.safe_dump(app.openapi(), sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    OPENAPI_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {OPENAPI_PATH}")
