"""Shared fixtures of the mapping tests: the repository's mappings, loaded once."""

from __future__ import annotations

import pytest

from fhir_bridge.mapping import Mappings, load_mappings


@pytest.fixture(scope="session")
def m() -> Mappings:
    return load_mappings()
