"""The cohort Group the server keeps per ResearchStudy."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_bridge.services.cohort import group_id, update
from fhir_bridge.store.sql import SQLStore


def subject(status: str, patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "ResearchSubject",
        "status": status,
        "period": {"start": "2023-01-01"},
        "study": {"reference": "ResearchStudy/s1"},
        "individual": {"reference": f"Patient/{patient}"},
    }


def cohort(store: SQLStore) -> dict[str, Any]:
    with store.session() as session:
        stored = session.read("Group", "cohort-s1")
    assert stored is not None
    group: dict[str, Any] = orjson.loads(stored.data)
    return group


def test_subjects_join_change_and_leave_the_cohort(store: SQLStore) -> None:
    with store.session(write=True) as session:
        update(session, subject("on-study", "p1"))
        update(session, subject("on-study", "p2"))
    group = cohort(store)
    assert group["quantity"] == 2
    assert group["characteristic"][0]["valueReference"] == {"reference": "ResearchStudy/s1"}
    assert [m["inactive"] for m in group["member"]] == [False, False]
    with store.session(write=True) as session:
        update(session, subject("withdrawn", "p1"))
    assert [(m["entity"]["reference"], m["inactive"]) for m in cohort(store)["member"]] == [
        ("Patient/p2", False),
        ("Patient/p1", True),
    ]
    with store.session(write=True) as session:
        update(session, subject("withdrawn", "p1"), removed=True)
        update(session, subject("on-study", "p2"), removed=True)
    assert "member" not in cohort(store)
    assert cohort(store)["quantity"] == 0


def test_long_study_ids_give_a_valid_group_id() -> None:
    assert group_id("s1") == "cohort-s1"
    assert len(group_id("x" * 64)) <= 64
