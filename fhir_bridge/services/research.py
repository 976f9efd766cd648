"""The research view of the stored data: the one code path by which Bulk exports, SQL on FHIR
view runs and reports read participant data (DESIGN.md section 6).

Resources are read in batches in write order; each participant's standing under the policy
(consent, withdrawal) is read first from their ResearchSubjects and Consents, then every
resource of a participant is kept or left out by it and pseudonymised by the ResearchView.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_bridge.domain import fhir_json
from fhir_bridge.domain.compartment import PATIENT_COMPARTMENT
from fhir_bridge.pseudonym import ResearchView, after_cutoff, participation
from fhir_bridge.pseudonym.consent import Participation
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.store import exports
from fhir_bridge.store.exports import Row, Selection
from fhir_bridge.store.sql import now_instant

BATCH = 2000  # resources read in one query
PATIENT_CHUNK = 500  # patients named in one query


def batches(ctx: ServiceContext, selection: Selection) -> Iterator[list[Row]]:
    """The selection's rows in write order, BATCH at a time, each batch read in a session of
    its own (no transaction stays open for a whole export) on the store's scan connections."""
    after = -1
    while True:
        with ctx.store.session(scan=True) as session:
            rows = exports.read_batch(session, selection, after, BATCH)
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        after = rows[-1][0]


def group_members(
    ctx: ServiceContext, group_id: str, only: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The local Patient members of a Group (those of `only`, when given); a missing or
    deleted Group is a RuntimeError (it was there when the work was accepted)."""
    with ctx.store.session() as session:
        stored = session.read("Group", group_id)
    if stored is None or stored.deleted:
        raise RuntimeError(f"Group/{group_id} was deleted")
    found: dict[str, None] = {}
    for member in orjson.loads(stored.data).get("member") or []:
        kind, _, patient_id = str(member.get("entity", {}).get("reference", "")).partition("/")
        if kind == "Patient" and patient_id and "/" not in patient_id:
            found[patient_id] = None
    return tuple(p for p in found if only is None or p in only)


@dataclass
class Research:
    """The research view applied to one read of the data: each participant's standing, and
    counts of what the policy left out (no identities)."""

    view: ResearchView
    participants: dict[str, tuple[Participation, str | None]]  # patient -> (standing, anchor)
    excluded_participants: Counter[str] = field(default_factory=Counter)
    excluded_resources: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(
        cls, ctx: ServiceContext, view: ResearchView, until: str, patients: Sequence[str] | None
    ) -> Research:
        """Each participant's standing under the policy, from their ResearchSubjects and
        Consents as of `until` (one record per participant is held, not whole resources)."""
        subjects: dict[str, list[dict[str, Any]]] = {}
        consents: dict[str, list[dict[str, Any]]] = {}
        for resource_type, into in (("ResearchSubject", subjects), ("Consent", consents)):
            selection = Selection(resource_type, until=until, compartment=True, with_patient=True)
            for rows in batches(ctx, selection):
                for _, _, data, patient in rows:
                    if patient is not None:
                        into.setdefault(patient, []).append(_standing(orjson.loads(data)))
        research = cls(view, {})
        policy = view.policy
        for patient, theirs in subjects.items():
            if patients is not None and patient not in patients:
                continue
            decision = participation(theirs, consents.get(patient, []), policy)
            starts = [s["period"]["start"] for s in theirs if s.get("period", {}).get("start")]
            if not starts and policy.date_method == "study-day":
                decision = Participation(False, "no-enrolment-date", None)
            research.participants[patient] = (decision, min(starts) if starts else None)
            if not decision.included:
                research.excluded_participants[decision.reason or "excluded"] += 1
            elif decision.cutoff:
                research.excluded_participants[f"cut-off-{decision.reason or 'cutoff'}"] += 1
        return research

    def apply(self, data: bytes, patient: str | None) -> dict[str, Any] | None:
        """The research view of one stored resource of `patient` (None: outside any
        participant's record), or None when the policy leaves it out."""
        resource: dict[str, Any] = fhir_json.loads(data)  # decimals as stored
        anchor = None
        if patient is not None:
            standing = self.participants.get(patient)
            if standing is None:
                self.excluded_resources["not-a-participant"] += 1
                return None
            decision, anchor = standing
            if not decision.included:
                self.excluded_resources[decision.reason or "excluded"] += 1
                return None
            if decision.cutoff and after_cutoff(resource, decision.cutoff):
                self.excluded_resources[f"after-{decision.reason or 'cutoff'}"] += 1
                return None
        return self.view.apply(resource, patient, anchor, data)

    def excluded(self) -> dict[str, dict[str, int]]:
        return {
            "participants": dict(self.excluded_participants),
            "resources": dict(self.excluded_resources),
        }


def research_resources(
    ctx: ServiceContext,
    view: ResearchView,
    types: Sequence[str],
    *,
    group: str | None = None,
    patients: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The research view of the stored resources of `types`, type by type in write order:
    of a Group's members (`group`), of some Patients (`patients`), or of every participant
    (neither; resources outside any Patient compartment come too). Types the policy does not
    release are skipped."""
    until = until or now_instant()
    chosen = group_members(ctx, group, patients) if group else patients
    chosen = None if chosen is None else tuple(chosen)
    research = Research.read(ctx, view, until, chosen)
    for resource_type in types:
        if not view.releases(resource_type):
            continue
        in_compartment = resource_type in PATIENT_COMPARTMENT
        if chosen is not None and not in_compartment:
            continue
        chunks: list[tuple[str, ...] | None] = [None]
        if chosen is not None:
            chunks = [chosen[n : n + PATIENT_CHUNK] for n in range(0, len(chosen), PATIENT_CHUNK)]
        for chunk in chunks:
            selection = Selection(
                resource_type,
                until=until,
                since=since,
                compartment=chosen is not None,
                patients=chunk,
                with_patient=in_compartment,
            )
            for rows in batches(ctx, selection):
                for _, _, data, patient in rows:
                    resource = research.apply(data, patient)
                    if resource is not None:
                        yield resource


def patients_named(ctx: ServiceContext, view: ResearchView, names: Sequence[str]) -> list[str]:
    """The Patient ids behind research-view pseudonyms (a researcher names participants by
    the ids the research view gave them); a name that is no Patient's pseudonym is kept as it
    is (the export then says it does not know it). Reads every Patient's id once."""
    wanted = set(names)
    found: dict[str, str] = {}
    for rows in batches(ctx, Selection("Patient", until=now_instant())):
        for _, patient_id, _, _ in rows:
            pseudonym = view.pseudonym("Patient", patient_id)
            if pseudonym in wanted:
                found[pseudonym] = patient_id
    return [found.get(name, name) for name in names]


def _standing(resource: dict[str, Any]) -> dict[str, Any]:
    """What participation() reads of a ResearchSubject or Consent."""
    kept = ("resourceType", "status", "period", "scope", "category", "provision")
    return {key: resource[key] for key in kept if key in resource}
