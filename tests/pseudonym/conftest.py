"""Shared fixtures of the pseudonym tests: the repository's research policy and a keyed view."""

from __future__ import annotations

import pytest

from fhir_bridge.pseudonym import ResearchPolicy, ResearchView, load_policy

KEY = b"test-pseudonym-key-0123456789abc"


@pytest.fixture(scope="session")
def policy() -> ResearchPolicy:
    return load_policy()


@pytest.fixture
def view(policy: ResearchPolicy) -> ResearchView:
    return ResearchView(policy, KEY)
