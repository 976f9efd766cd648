"""The app with authentication on (the suite runs it off: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url,
        export_dir=str(tmp_path),
        auth="enabled",
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client
