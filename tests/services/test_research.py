"""The research view of stored data, as exports, views and reports read it."""

from __future__ import annotations

from typing import Any

from fhir_bridge.pseudonym import ResearchView, load_policy
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.research import research_resources
from fhir_bridge.store.sql import SQLStore

KEY = b"research-view-test-key-32-bytes!"


def seed(store: SQLStore) -> None:
    """Two enrolled participants, p1 in Group g; an outsider without a ResearchSubject."""
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Group",
            "id": "g",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/p1"}}],
        },
        {"resourceType": "Questionnaire", "id": "q", "status": "active"},
    ]
    for patient in ("p1", "p2", "outsider"):
        resources.append({"resourceType": "Patient", "id": patient, "name": [{"family": "Doe"}]})
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"o-{patient}",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": "2024-03-01",
            }
        )
    for patient in ("p1", "p2"):
        resources.append(
            {
                "resourceType": "ResearchSubject",
                "id": f"rs-{patient}",
                "status": "on-study",
                "period": {"start": "2024-01-01"},
                "study": {"reference": "ResearchStudy/s"},
                "individual": {"reference": f"Patient/{patient}"},
            }
        )
    with store.session(write=True) as session:
        for resource in resources:
            session.put(resource, "POST")


def test_every_participant_and_what_no_participant_owns(store: SQLStore) -> None:
    seed(store)
    view = ResearchView(load_policy(), KEY)
    ctx = ServiceContext(store=store, validator=lambda resource, profiles: [])
    found = list(research_resources(ctx, view, ["Patient", "Observation", "Questionnaire"]))
    assert [r["resourceType"] for r in found] == [
        "Patient",
        "Patient",
        "Observation",
        "Observation",
        "Questionnaire",
    ]
    assert {r["id"] for r in found if r["resourceType"] == "Patient"} == {
        view.pseudonym("Patient", "p1"),
        view.pseudonym("Patient", "p2"),
    }
    assert all("name" not in r for r in found)


def test_a_groups_members_only(store: SQLStore) -> None:
    seed(store)
    view = ResearchView(load_policy(), KEY)
    ctx = ServiceContext(store=store, validator=lambda resource, profiles: [])
    found = list(research_resources(ctx, view, ["Observation", "Questionnaire"], group="g"))
    assert [r["subject"]["reference"] for r in found] == [
        f"Patient/{view.pseudonym('Patient', 'p1')}"
    ]
