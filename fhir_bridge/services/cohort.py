"""The cohort Group of each ResearchStudy, kept by the server: one member per Patient with a
ResearchSubject in the study, updated in the transaction that writes the ResearchSubject.

A Bulk Data Group export of it (`Group/cohort-{study id}/$export`) exports the study's
participants; https://hl7.org/fhir/uv/bulkdata/STU2/export.html#endpoint---group-of-patients.
Members whose subject is withdrawn or not (yet) enrolled are kept as `inactive`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from fhir_bridge.store.base import StoreSession

COHORT_SYSTEM = "https://fhir-bridge.org/fhir/sid/cohort"
# R4 ResearchSubject.status (http://hl7.org/fhir/research-subject-status) of a subject in the
# study's cohort; any other status makes the member inactive
ENROLLED = frozenset(
    {"on-study", "on-study-intervention", "on-study-observation", "follow-up", "off-study"}
)


def group_id(study_id: str) -> str:
    """`cohort-{study id}`, or a digest of the id where that would pass 64 characters."""
    name = f"cohort-{study_id}"
    return (
        name if len(name) <= 64 else f"cohort-{hashlib.sha256(study_id.encode()).hexdigest()[:40]}"
    )


def _local_id(reference: Any, resource_type: str) -> str | None:
    text = reference.get("reference") if isinstance(reference, dict) else None
    kind, _, rest = str(text or "").partition("/")
    return rest if kind == resource_type and rest and "/" not in rest else None


def update(session: StoreSession, subject: dict[str, Any], removed: bool = False) -> None:
    """Put the subject's Patient in (or, `removed`, out of) the cohort Group of its study."""
    study_id = _local_id(subject.get("study"), "ResearchStudy")
    patient_id = _local_id(subject.get("individual"), "Patient")
    if study_id is None or patient_id is None:
        return
    gid = group_id(study_id)
    current = session.read("Group", gid)
    if current is not None and not current.deleted:
        group = orjson.loads(current.data)
        group.pop("meta", None)
    elif removed:
        return
    else:
        group = _new_group(gid, study_id)
    entity = f"Patient/{patient_id}"
    members = [m for m in group.get("member", []) if m.get("entity", {}).get("reference") != entity]
    if not removed:
        member: dict[str, Any] = {"entity": {"reference": entity}}
        if isinstance(subject.get("period"), dict):
            member["period"] = subject["period"]
        member["inactive"] = subject.get("status") not in ENROLLED
        members.append(member)
    group["member"] = members
    group["quantity"] = len(members)
    if not members:
        del group["member"]
    session.put(group, "PUT")


def _new_group(gid: str, study_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Group",
        "id": gid,
        "identifier": [{"system": COHORT_SYSTEM, "value": study_id}],
        "active": True,
        "type": "person",
        "actual": True,
        "name": "Participants of the research study",
        "characteristic": [
            {
                "code": {"text": "ResearchSubject of the study"},
                "valueReference": {"reference": f"ResearchStudy/{study_id}"},
                "exclude": False,
            }
        ],
        "quantity": 0,
    }
