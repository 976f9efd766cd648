"""The trial's rules over what the store holds, run in the write's session (ServiceContext
record_rules): MDMA doses per dosing session, the visit schedule (instruments, dates, windows),
no assessment after withdrawal, one score per instrument, participant and visit.

Each reads the few resources of one participant or one session by search, so its cost is
bounded by the protocol (at most one Encounter per visit), not by the data set.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Any
from weakref import WeakKeyDictionary

import orjson

from fhir_bridge.domain.issues import Issue
from fhir_bridge.mapping import Mappings
from fhir_bridge.mapping.clinical import mdma_dose, score_instrument, session_dose_findings
from fhir_bridge.mapping.schedule import (
    UNSCHEDULED_ASSESSMENT,
    VISIT_OUTSIDE_WINDOW,
    check_after_withdrawal,
    check_scheduled,
    check_visit_dates,
    day,
    visit_of,
    visit_start,
)
from fhir_bridge.mapping.spec import SYSTEMS, InstrumentSpec
from fhir_bridge.services.context import RecordFindings, RecordRule
from fhir_bridge.store.base import StoreSession
from fhir_bridge.store.search import find_ids

_REFERENCE = {
    kind: re.compile(rf"{kind}/[A-Za-z0-9\-.]{{1,64}}") for kind in ("Encounter", "Patient")
}
# A score that was withdrawn (cancelled, entered in error) does not hold its visit's place.
_VOID = ("cancelled", "entered-in-error")


def record_rules(m: Mappings) -> list[RecordRule]:
    """The trial's record rules, in the order their findings are reported."""

    def session_doses(session: StoreSession, resource: dict[str, Any]) -> RecordFindings:
        """MDMA doses summed over the dosing session (the context Encounter); an
        administration without one is a session of its own."""
        if resource.get("resourceType") != "MedicationAdministration":
            return RecordFindings()
        dose = mdma_dose(resource, m)
        if dose is None:
            return RecordFindings()
        total = dose
        encounter = _reference(resource.get("context"), "Encounter")
        if encounter is not None:
            query = f"context={encounter}"
            for other in _live(session, "MedicationAdministration", query, resource.get("id")):
                total += mdma_dose(other, m) or 0
        issues, tags = session_dose_findings(resource, total, m)
        return RecordFindings(issues, tags)

    def visit_dates(session: StoreSession, resource: dict[str, Any]) -> RecordFindings:
        if resource.get("resourceType") != "Encounter":
            return RecordFindings()
        visit, start = visit_of(resource, m), day(visit_start(resource))
        patient = _reference(resource.get("subject"), "Patient")
        if visit is None or start is None or patient is None:
            return RecordFindings()
        others: dict[str, date] = {}
        for other in _live(session, "Encounter", f"subject={patient}", resource.get("id")):
            other_visit, other_day = visit_of(other, m), day(visit_start(other))
            if other_visit is not None and other_day is not None:
                others.setdefault(other_visit.code, other_day)
        issues, outside = check_visit_dates(visit, start, others, m)
        return RecordFindings(issues, [_flag(VISIT_OUTSIDE_WINDOW)] if outside else [])

    def assessments(session: StoreSession, resource: dict[str, Any]) -> RecordFindings:
        if resource.get("resourceType") == "ResearchSubject":
            _WITHDRAWALS.pop(session, None)  # a withdrawal may have come or gone
            return RecordFindings()
        found = _assessment(resource, m)
        if found is None:
            return RecordFindings()
        spec, patient, encounter, when, date_path = found
        issues: list[Issue] = []
        tags: list[dict[str, str]] = []
        kind = resource["resourceType"]
        if encounter is not None:
            stored = session.read("Encounter", encounter.partition("/")[2])
            visit = (
                visit_of(orjson.loads(stored.data), m)
                if stored is not None and not stored.deleted
                else None
            )
            scheduled = check_scheduled(spec, visit, f"{kind}.encounter", m) if visit else None
            if scheduled is not None:
                issues.append(scheduled)
                tags += [] if scheduled.is_error else [_flag(UNSCHEDULED_ASSESSMENT)]
        if patient is not None and when is not None:
            for withdrawn in _withdrawals(session, patient):
                late = check_after_withdrawal(when, withdrawn, date_path)
                issues += [late] if late is not None else []
        if kind == "Observation" and patient is not None and encounter is not None:
            issues += _second_score(session, resource, spec, patient, encounter)
        return RecordFindings(issues, tags)

    return [session_doses, visit_dates, assessments]


def _reference(value: Any, kind: str) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    if isinstance(reference, str) and _REFERENCE[kind].fullmatch(reference):
        return reference
    return None


def _live(
    session: StoreSession, resource_type: str, query: str, own_id: Any
) -> Iterator[dict[str, Any]]:
    """The live resources a search finds, the one being written left out (its earlier
    version is what it replaces)."""
    for found in find_ids(session.execute, resource_type, query):
        stored = session.read(resource_type, found)
        if found != own_id and stored is not None and not stored.deleted:
            yield orjson.loads(stored.data)


def _flag(code: str) -> dict[str, str]:
    return {"system": SYSTEMS["data-quality"], "code": code}


def _assessment(
    resource: dict[str, Any], m: Mappings
) -> tuple[InstrumentSpec, str | None, str | None, date | None, str] | None:
    """(instrument, patient, encounter, day, path of the day) of a score Observation or a
    response to a trial Questionnaire; None for anything else."""
    kind = resource.get("resourceType")
    if kind == "Observation":
        spec = score_instrument(resource, m)
        subject, date_key = resource.get("subject"), "effectiveDateTime"
    elif kind == "QuestionnaireResponse":
        canonical = resource.get("questionnaire")
        spec = m.instrument_for_questionnaire(canonical) if isinstance(canonical, str) else None
        subject, date_key = resource.get("subject"), "authored"
    else:
        return None
    if spec is None or resource.get("status") in _VOID:
        return None
    patient = _reference(subject, "Patient")
    encounter = _reference(resource.get("encounter"), "Encounter")
    return spec, patient, encounter, day(resource.get(date_key)), f"{kind}.{date_key}"


# Per write session (one transaction), the withdrawal days of the participants met so far: a
# Bundle of one participant's assessments asks the store once, not once per resource (each
# search flushes the session's batched inserts). A ResearchSubject written in the session
# makes it forget them.
_WITHDRAWALS: WeakKeyDictionary[StoreSession, dict[str, list[date]]] = WeakKeyDictionary()


def _withdrawals(session: StoreSession, patient: str) -> list[date]:
    """The days the participant withdrew (a withdrawn ResearchSubject's period.end)."""
    known = _WITHDRAWALS.setdefault(session, {})
    if patient not in known:
        days = []
        for subject in _live(session, "ResearchSubject", f"individual={patient}", None):
            period = subject.get("period")
            end = day(period.get("end")) if isinstance(period, dict) else None
            if subject.get("status") == "withdrawn" and end is not None:
                days.append(end)
        known[patient] = days
    return known[patient]


def _second_score(
    session: StoreSession,
    obs: dict[str, Any],
    spec: InstrumentSpec,
    patient: str,
    encounter: str,
) -> list[Issue]:
    """One score per instrument, participant and visit: another live one is a conflict. A
    correction is an update of the first (PUT of its id, a conditional update, an amended
    response), or the first marked entered-in-error."""
    system, code = spec.total_coding
    query = f"subject={patient}&encounter={encounter}&code={system}|{code}"
    for other in _live(session, "Observation", query, obs.get("id")):
        if other.get("status") not in _VOID:
            text = (
                f"{spec.name} is already scored for {patient} at {encounter} "
                f"(Observation/{other.get('id')}): update that one to correct it"
            )
            return [Issue("error", "duplicate", text, "Observation.code")]
    return []
