"""Shared fixtures: a store on every backend (SQLite file, PostgreSQL schema), the app, clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings
from fhir_bridge.store.indexing import extract_index
from fhir_bridge.store.sql import SQLStore
from tools.compiled import stale

# The suite runs with authentication off (as FHIR_BRIDGE_AUTH=disabled does for a user), so
# that every other behaviour is tested as it is without it; the tests of authentication and
# authorization turn it on for their own apps and servers (tests/api/test_auth.py, ...).
os.environ["FHIR_BRIDGE_AUTH"] = "disabled"

POSTGRES_URL = os.environ.get(
    "FHIR_BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test: a SQLite file, or a PostgreSQL schema dropped after."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fhir.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def pytest_configure(config: pytest.Config) -> None:
    # A compiled module older than its source would be tested instead of the edited source.
    if stale():
        pytest.exit(f"compiled builds older than their sources: {stale()}; run ./dev build", 2)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # every test that uses a database runs on both engines
    if "database_url" in metafunc.fixturenames:
        metafunc.parametrize("database_url", BACKENDS, indirect=True, ids=BACKENDS)


@pytest.fixture
def store(database_url: str) -> Iterator[SQLStore]:
    store = SQLStore(database_url, extract_index)
    yield store
    store.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        export_dir=str(tmp_path / "exports"),
        allowed_hosts=["testserver"],  # the Host of TestClient's requests
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client
