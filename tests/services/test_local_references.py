"""Local references of a write must name a resource this server holds (422 naming each
element otherwise); the setting check_references turns the check off."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_bridge.errors import UnprocessableResourceError
from fhir_bridge.services import resources
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.store.sql import SQLStore


@pytest.fixture
def ctx(store: SQLStore) -> ServiceContext:
    return ServiceContext(store=store, validator=lambda resource, profiles: [])


def observation(*references: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": references[0]},
        "derivedFrom": [{"reference": r} for r in references[1:]],
    }


def refused(ctx: ServiceContext, resource: dict[str, Any]) -> list[tuple[str, str | None]]:
    with pytest.raises(UnprocessableResourceError) as raised:
        resources.create(ctx, resource)
    return [(i.code, i.expression) for i in raised.value.issues]


def test_each_reference_that_names_no_resource_is_refused_at_its_element(
    ctx: ServiceContext,
) -> None:
    resources.update(ctx, {"resourceType": "Patient", "id": "p1"})
    found = refused(ctx, observation("Patient/p1", "Observation/o9", "Patient/p2"))
    assert found == [
        ("not-found", "Observation.derivedFrom[0].reference"),
        ("not-found", "Observation.derivedFrom[1].reference"),
    ]


def test_a_reference_to_a_deleted_resource_is_refused(ctx: ServiceContext) -> None:
    resources.update(ctx, {"resourceType": "Patient", "id": "p1"})
    resources.delete(ctx, "Patient", "p1")
    assert refused(ctx, observation("Patient/p1")) == [
        ("not-found", "Observation.subject.reference")
    ]


def test_a_version_specific_reference_must_name_a_stored_version(ctx: ServiceContext) -> None:
    resources.update(ctx, {"resourceType": "Patient", "id": "p1"})
    resources.create(ctx, observation("Patient/p1/_history/1"))
    assert refused(ctx, observation("Patient/p1/_history/2")) == [
        ("not-found", "Observation.subject.reference")
    ]


def test_absolute_contained_and_own_references_are_not_looked_up(ctx: ServiceContext) -> None:
    resource = {
        **observation("http://elsewhere.example/fhir/Patient/x", "#c1", "Observation/o1"),
        "id": "o1",
        "contained": [{"resourceType": "Patient", "id": "c1"}],
    }
    assert resources.update(ctx, resource)[1] is True


def test_a_patch_that_adds_a_dangling_reference_is_refused(ctx: ServiceContext) -> None:
    resources.update(ctx, {"resourceType": "Patient", "id": "p1"})
    stored, _ = resources.create(ctx, observation("Patient/p1"))
    operations = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]
    with pytest.raises(UnprocessableResourceError):
        resources.patch(ctx, "Observation", stored.id, operations)
    assert resources.read(ctx, "Observation", stored.id).version_id == 1


def test_nothing_is_looked_up_when_the_check_is_off(ctx: ServiceContext) -> None:
    ctx.check_references = False
    stored, created = resources.create(ctx, observation("Patient/later"))
    assert created and stored.version_id == 1
