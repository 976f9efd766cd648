"""Whether, and up to when, a participant's data reach a research consumer (consent, withdrawal).

https://hl7.org/fhir/R4/consent.html, https://hl7.org/fhir/R4/researchsubject.html
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_bridge.pseudonym.policy import ResearchPolicy

# The element deciding whether a resource lies after a cut-off, first present wins: the
# clinically relevant time, as the R4 "clinical-date" search parameters and their kin use it
# (https://hl7.org/fhir/R4/searchparameter-registry.html), never meta.lastUpdated (data entry).
_CLINICAL_DATES: dict[str, tuple[tuple[str, ...], ...]] = {
    "Observation": (
        ("effectiveDateTime",),
        ("effectivePeriod", "start"),
        ("effectiveInstant",),
        ("issued",),
    ),
    "Encounter": (("period", "start"),),
    "MedicationAdministration": (("effectiveDateTime",), ("effectivePeriod", "start")),
    "Procedure": (("performedDateTime",), ("performedPeriod", "start")),
    "QuestionnaireResponse": (("authored",),),
    "AdverseEvent": (("date",), ("detected",), ("recordedDate",)),
    "Consent": (("dateTime",),),
    "Provenance": (("occurredDateTime",), ("occurredPeriod", "start"), ("recorded",)),
    "AuditEvent": (("recorded",),),
}


@dataclass(frozen=True)
class Participation:
    """Whether a participant's data are released, why not or why cut off, and the cut-off."""

    included: bool
    reason: str | None  # "consent-denied", "no-research-consent", "withdrawn", ...; no identities
    cutoff: str | None  # FHIR date/dateTime as stored (unshifted): data dated after it are out


def _codings(concept: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(concept, dict):
        for coding in concept.get("coding") or ():
            if isinstance(coding, dict):
                yield coding.get("system"), coding.get("code")


def _is_research(consent: dict[str, Any], policy: ResearchPolicy) -> bool:
    codes = policy.consent.research_codings
    concepts = [consent.get("scope"), *(consent.get("category") or ())]
    return any(coding in codes for concept in concepts for coding in _codings(concept))


def participation(
    subjects: list[dict[str, Any]], consents: list[dict[str, Any]], policy: ResearchPolicy
) -> Participation:
    """Apply the policy's consent and withdrawal rules to one participant, given their
    ResearchSubject and Consent resources.

    An active research Consent whose top-level provision denies excludes the participant; a
    withdrawn ResearchSubject excludes them, or under "until-withdrawal" cuts their data off
    at its period.end (excluded when that is missing: the cut-off is unknown).
    https://hl7.org/fhir/R4/consent-definitions.html#Consent.provision.type
    """
    research = [c for c in consents if c.get("status") == "active" and _is_research(c, policy)]
    if any((consent.get("provision") or {}).get("type") == "deny" for consent in research):
        return Participation(False, "consent-denied", None)
    if policy.consent.require_consent and not research:
        return Participation(False, "no-research-consent", None)
    withdrawn = [s for s in subjects if s.get("status") == "withdrawn"]
    if not withdrawn:
        return Participation(True, None, None)
    if policy.withdrawn == "exclude":
        return Participation(False, "withdrawn", None)
    ends = [(subject.get("period") or {}).get("end") for subject in withdrawn]
    known = [end for end in ends if isinstance(end, str) and end]
    if len(known) < len(ends):
        return Participation(False, "withdrawn-without-end-date", None)
    # several withdrawals (several studies): the earliest end bounds what may be seen
    return Participation(True, "withdrawn", min(known, key=lambda end: (end[:10], end)))


def clinical_date(resource: dict[str, Any]) -> str | None:
    """The date/dateTime that decides whether `resource` lies after a cut-off; None for types
    without one (Patient, ResearchSubject, ...: always released) or when it is absent."""
    for path in _CLINICAL_DATES.get(resource.get("resourceType", ""), ()):
        value: Any = resource
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def _precision(value: str) -> int:
    """1 year, 2 month, 3 day, 4 time of day."""
    return 4 if len(value) > 10 else 3 if len(value) == 10 else 2 if len(value) == 7 else 1


def _instant(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def after_cutoff(resource: dict[str, Any], cutoff: str) -> bool:
    """Whether the resource's clinical date lies after `cutoff`, compared at the coarser of the
    two precisions: on 2023-08-17 nothing of that day is after it, the next day is; two times
    of day compare as instants (time zones applied); a resource without a date is not after."""
    value = clinical_date(resource)
    if value is None:
        return False
    precision = min(_precision(value), _precision(cutoff))
    if precision == 4:
        moment, limit = _instant(value), _instant(cutoff)
        if moment is not None and limit is not None:
            return moment > limit
        precision = 3
    width = (4, 7, 10)[precision - 1]
    return value[:width] > cutoff[:width]
