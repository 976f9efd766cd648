"""Every deliberately broken resource of the corpus is caught, at the right element."""

from __future__ import annotations

import pytest

from fhir_bridge.validation import Validator
from tests.validation.corpus import MUTATIONS, VALID, Mutation, profile_resources


@pytest.fixture(scope="module")
def validator() -> Validator:
    v = Validator()
    v.add_profiles(profile_resources())
    return v


def test_corpus_has_at_least_100_mutations() -> None:
    assert len(MUTATIONS) >= 100
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_base_resource_has_no_errors(validator: Validator, name: str) -> None:
    issues = validator.validate(VALID[name])
    assert [i for i in issues if i.is_error] == []


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_broken_resource_is_caught_at_its_path(validator: Validator, mutation: Mutation) -> None:
    issues = validator.validate(mutation.resource(), mutation.profiles)
    errors = [(i.code, i.expression) for i in issues if i.is_error]
    assert (mutation.code, mutation.expression) in errors
