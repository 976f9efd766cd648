"""The writes that bring the server's record of one participant in line with their rows of a
table (mapping/columns.py): a resource the server lacks is a conditional create on its stable
identifier, one that differs is an update of the version read (If-Match), an equal one is left
alone. Importing a file again therefore writes nothing, and a corrected cell lands as a new
version of the resource it came from, with history.
https://hl7.org/fhir/R4/http.html#transaction, https://hl7.org/fhir/R4/http.html#concurrency
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fhir_bridge.domain.issues import Issue
from fhir_bridge.mapping.columns import (
    ENCOUNTER_SYSTEM,
    OBSERVATION_SYSTEM,
    VisitRow,
    row_observation,
    urn,
    visit_encounter,
)
from fhir_bridge.mapping.observations import component_values, total_value
from fhir_bridge.mapping.spec import CANONICAL, SID, SYSTEMS
from fhir_bridge.mapping.subjects import SUBJECT_SYSTEM

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

CONSENT_SYSTEM = f"{SID}/consent"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
# Fields the table carries: an update replaces these and keeps everything else it read
_OBSERVATION_FIELDS = ("valueQuantity", "dataAbsentReason", "interpretation", "component")

Action = Literal["created", "updated", "unchanged"]


@dataclass
class Participant:
    """The server's record of one enrolled study subject (None in plan(): not enrolled)."""

    subject_id: str
    patient: str  # "Patient/{id}", the ResearchSubject's individual
    study: str  # the ResearchSubject's study reference
    encounters: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Write:
    """What one resource needs: `entry` is its transaction entry, None when unchanged."""

    resource_type: str
    action: Action
    line: int
    entry: dict[str, Any] | None


def _create(resource: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    return {
        # the type too: Patient and ResearchSubject share the study subject identifier
        "fullUrl": urn(f"{resource['resourceType']} {system}", value),
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={system}|{value}",
        },
    }


def _update(current: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
    """PUT of `changed` over `current`, only if `current` is still the server's version."""
    kind, resource_id = current["resourceType"], current["id"]
    request = {"method": "PUT", "url": f"{kind}/{resource_id}"}
    version = current.get("meta", {}).get("versionId")
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"fullUrl": f"{kind}/{resource_id}", "resource": changed, "request": request}


def enrolment(subject_id: str, line: int, study: str) -> tuple[str, list[Write]]:
    """A new participant: Patient, Consent and ResearchSubject created together (the Patient
    reference, the writes). The Patient carries the study subject id until the site links it
    to its record; the Consent states the research consent the enrolment presupposes."""
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": SUBJECT_SYSTEM, "value": subject_id}],
    }
    patient_entry = _create(patient, SUBJECT_SYSTEM, subject_id)
    patient_ref = str(patient_entry["fullUrl"])
    consent = {
        "resourceType": "Consent",
        "identifier": [{"system": CONSENT_SYSTEM, "value": subject_id}],
        "status": "active",
        # scope: required binding of R4 Consent (consent-scope); policy: ppc-1 wants one
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "research"}]},
        "category": [{"text": "Informed consent to trial participation"}],
        "patient": {"reference": patient_ref},
        "policy": [{"uri": f"{CANONICAL}/{study}"}],
    }
    consent_entry = _create(consent, CONSENT_SYSTEM, subject_id)
    research_subject = {
        "resourceType": "ResearchSubject",
        "meta": {"profile": [f"{CANONICAL}/StructureDefinition/trial-research-subject"]},
        "identifier": [{"system": SUBJECT_SYSTEM, "value": subject_id}],
        "status": "on-study",
        "study": {"reference": study},
        "individual": {"reference": patient_ref},
        "consent": {"reference": consent_entry["fullUrl"]},
    }
    return patient_ref, [
        Write("Patient", "created", line, patient_entry),
        Write("Consent", "created", line, consent_entry),
        Write(
            "ResearchSubject",
            "created",
            line,
            _create(research_subject, SUBJECT_SYSTEM, subject_id),
        ),
    ]


def _identified(resources: list[dict[str, Any]], system: str) -> dict[str, dict[str, Any]]:
    return {
        str(i["value"]): r
        for r in resources
        for i in r.get("identifier", [])
        if i.get("system") == system and i.get("value")
    }


def _visit_of(encounter: dict[str, Any], m: Mappings) -> str | None:
    for t in encounter.get("type", []):
        for c in t.get("coding", []):
            if c.get("system") == SYSTEMS["visit"] and m.visit(str(c.get("code"))) is not None:
                return str(c["code"])
    return None


def _with_identifier(resource: dict[str, Any], system: str, value: str) -> list[dict[str, Any]]:
    identifiers = list(resource.get("identifier", []))
    if not any(i.get("system") == system and i.get("value") == value for i in identifiers):
        identifiers.append({"system": system, "value": value})
    return identifiers


def plan(
    rows: list[VisitRow], participant: Participant, m: Mappings
) -> tuple[list[Write], list[Issue]]:
    """The writes for one enrolled participant's rows, and the issues that stop them (the
    server holds two Encounters of one visit, or a score derived from a QuestionnaireResponse
    differs: the response is what must be corrected)."""
    writes: list[Write] = []
    issues: list[Issue] = []
    by_key = _identified(participant.encounters, ENCOUNTER_SYSTEM)
    by_visit: dict[str, list[dict[str, Any]]] = {}
    for encounter in participant.encounters:
        visit = _visit_of(encounter, m)
        if visit is not None:
            by_visit.setdefault(visit, []).append(encounter)
    scores = _identified(participant.observations, OBSERVATION_SYSTEM)
    by_encounter: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for obs in participant.observations:
        for c in obs.get("code", {}).get("coding", []):
            spec = m.instrument_for_total(c.get("system"), c.get("code"))
            if spec is not None:
                reference = str(obs.get("encounter", {}).get("reference", ""))
                by_encounter.setdefault((reference, spec.id), []).append(obs)
    for row in rows:
        current = by_key.get(row.key)
        if current is None and len(by_visit.get(row.visit, [])) > 1:
            ids = ", ".join(f"Encounter/{e['id']}" for e in by_visit[row.visit])
            issues.append(
                Issue(
                    "error",
                    "multiple-matches",
                    f"the server holds several {row.visit} Encounters of {row.subject} ({ids})",
                    f"line {row.line}",
                )
            )
            continue
        if current is None and by_visit.get(row.visit):
            current = by_visit[row.visit][0]
        desired = visit_encounter(row, m, participant.patient, participant.study)
        if current is None:
            entry = _create(desired, ENCOUNTER_SYSTEM, row.key)
            writes.append(Write("Encounter", "created", row.line, entry))
            encounter_ref = str(entry["fullUrl"])
        else:
            encounter_ref = f"Encounter/{current['id']}"
            same_date = str(current.get("period", {}).get("start", ""))[:10] == row.date
            has_key = current.get("identifier") == _with_identifier(
                current, ENCOUNTER_SYSTEM, row.key
            )
            if same_date and has_key:
                writes.append(Write("Encounter", "unchanged", row.line, None))
            else:
                changed = {
                    **current,
                    "identifier": _with_identifier(current, ENCOUNTER_SYSTEM, row.key),
                }
                if not same_date:  # the old end belonged to the old date
                    changed["period"] = {"start": row.date}
                writes.append(Write("Encounter", "updated", row.line, _update(current, changed)))
        for spec_id in row.scores:
            spec = m.instrument(spec_id)
            obs_key = f"{row.key}/{spec_id}"
            desired_obs = row_observation(
                row, spec, participant.patient, encounter_ref, participant.study
            )
            existing = scores.get(obs_key)
            if existing is None and current is not None:
                candidates = by_encounter.get((encounter_ref, spec_id), [])
                existing = candidates[0] if len(candidates) == 1 else None
            if existing is None:
                entry = _create(desired_obs, OBSERVATION_SYSTEM, obs_key)
                writes.append(Write("Observation", "created", row.line, entry))
                continue
            given = row.scores[spec_id]
            same = (
                component_values(spec, existing) == given.values
                and total_value(existing) == given.total
                and str(existing.get("effectiveDateTime", ""))[:10] == row.date
            )
            if same:
                writes.append(Write("Observation", "unchanged", row.line, None))
                continue
            sources = [d.get("reference") for d in existing.get("derivedFrom", [])]
            if sources:
                issues.append(
                    Issue(
                        "error",
                        "business-rule",
                        f"{spec.name} of {row.subject} at {row.visit} is scored from "
                        f"{', '.join(map(str, sources))}: correct the response, not its score",
                        f"line {row.line}",
                    )
                )
                continue
            changed = {k: v for k, v in existing.items() if k not in _OBSERVATION_FIELDS}
            changed |= {k: desired_obs[k] for k in _OBSERVATION_FIELDS if k in desired_obs}
            changed["effectiveDateTime"] = desired_obs["effectiveDateTime"]
            changed["identifier"] = _with_identifier(existing, OBSERVATION_SYSTEM, obs_key)
            if existing.get("status") in ("final", "amended", "corrected"):
                # https://hl7.org/fhir/R4/valueset-observation-status.html: changed after final
                changed["status"] = "amended"
            writes.append(Write("Observation", "updated", row.line, _update(existing, changed)))
    return writes, issues
