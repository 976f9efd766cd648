"""The trial's rules on the write path, built from mappings/ and the validator.

Transforms translate a hospital's local codes through the ConceptMaps (the original coding is
kept) and give a score its severity; rules are the clinical checks (ranges, totals, protocol
visits), record rules those over the store (trial_records); the derivation scores a completed
QuestionnaireResponse of a trial instrument into its score Observation, written in the same
transaction as the response.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.mapping import (
    Mappings,
    check_clinical,
    interpret,
    load_mappings,
    may_interpret,
    may_translate,
    score_response,
    translate_codes,
)
from fhir_bridge.mapping.subjects import check_subject_ids
from fhir_bridge.services.context import (
    Derivation,
    ServiceContext,
    Transform,
    Transition,
    WriteCheck,
)
from fhir_bridge.services.trial_records import record_rules
from fhir_bridge.store.base import ResourceStore
from fhir_bridge.validation import Validator

SCORED_STATUSES = ("completed", "amended")
SCORE_NAMESPACE = uuid.UUID("6f1b3c52-8a4e-5d1f-9c0e-2b7a4d6e8f10")  # fhir-bridge score ids
# ResearchSubject statuses a participant does not come back from
# (https://hl7.org/fhir/R4/codesystem-research-subject-status.html): a withdrawn participant
# who returns, or an ineligible candidate later found eligible, is a new ResearchSubject.
FINAL_SUBJECT_STATUSES = ("withdrawn", "ineligible", "not-registered")


@dataclass(frozen=True)
class Trial:
    """The compiled trial definitions: mappings, a validator knowing the project's profiles,
    and the conformance resources to publish (profiles with generated snapshots)."""

    mappings: Mappings
    validator: Validator
    conformance: list[dict[str, Any]]
    study: list[dict[str, Any]]

    def profiles_by_type(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for r in self.conformance:
            if r["resourceType"] == "StructureDefinition" and r.get("derivation") == "constraint":
                found.setdefault(r["type"], []).append(r["url"])
        return found


@lru_cache(maxsize=4)
def load_trial(mappings_dir: Path | None = None) -> Trial:
    """Load and compile once per process: definitions are immutable, so sharing is safe."""
    m = load_mappings(mappings_dir)
    validator = Validator()
    conformance = m.conformance_resources()
    validator.add_profiles(conformance)
    published = [
        validator.snapshot(r) if r["resourceType"] == "StructureDefinition" else r
        for r in conformance
    ]
    return Trial(m, validator, published, m.study_resources())


def score_id(response_id: str, n: int = 0) -> str:
    """The score Observation's id follows from its response's: a re-sent or amended response
    updates its score instead of adding a second one. A name-based uuid keeps it a valid id
    whatever the response's id (up to 64 characters) is."""
    return str(uuid.uuid5(SCORE_NAMESPACE, f"QuestionnaireResponse/{response_id}#{n}"))


def trial_context(
    store: ResourceStore, trial: Trial, check_references: bool = True, **limits: Any
) -> ServiceContext:
    """The server's ServiceContext: `store` with the trial's write checks (and paging,
    Bundle or cost `limits` of ServiceContext)."""
    context = ServiceContext(
        store=store,
        validator=trial.validator.validate,
        transforms=transforms(trial.mappings),
        rules=rules(trial.mappings),
        derivations=derivations(trial.mappings),
        transitions=transitions(),
        record_rules=record_rules(trial.mappings),
        **limits,
    )
    context.check_references = check_references
    return context


@dataclass(frozen=True)
class CodeTranslation:
    """The trial's local codes translated through its ConceptMaps (translate_codes); a
    request body that may_translate rules out skips it (ServiceContext.for_body)."""

    mappings: Mappings

    def __call__(self, resource: dict[str, Any]) -> dict[str, Any]:
        return translate_codes(resource, self.mappings)

    def may_apply(self, raw: bytes) -> bool:
        return may_translate(raw, self.mappings)


@dataclass(frozen=True)
class SeverityInterpretation:
    """A score Observation posted without an interpretation gets its severity (interpret);
    after CodeTranslation, so that a local total code counts."""

    mappings: Mappings

    def __call__(self, resource: dict[str, Any]) -> dict[str, Any]:
        return interpret(resource, self.mappings)

    def may_apply(self, raw: bytes) -> bool:
        return may_interpret(raw, self.mappings) or may_translate(raw, self.mappings)


def transforms(m: Mappings) -> list[Transform]:
    return [CodeTranslation(m), SeverityInterpretation(m)]


def rules(m: Mappings) -> list[WriteCheck]:
    def clinical(resource: dict[str, Any]) -> list[Issue]:
        return check_clinical(resource, m)

    return [clinical, check_subject_ids]


def derivations(m: Mappings) -> list[Derivation]:
    def score(resource: dict[str, Any]) -> list[dict[str, Any]]:
        if resource.get("resourceType") != "QuestionnaireResponse":
            return []
        canonical = resource.get("questionnaire")
        if not isinstance(canonical, str) or m.instrument_for_questionnaire(canonical) is None:
            return []  # not a trial instrument: stored as sent, nothing to score
        if resource.get("status") not in SCORED_STATUSES:
            return []
        observations = score_response(resource, m)
        return [{**obs, "id": score_id(resource["id"], n)} for n, obs in enumerate(observations)]

    return [score]


def transitions() -> dict[str, list[Transition]]:
    def subject_status(current: dict[str, Any], new: dict[str, Any]) -> list[Issue]:
        old_status, new_status = current.get("status"), new.get("status")
        if old_status in FINAL_SUBJECT_STATUSES and new_status != old_status:
            text = f"a {old_status} ResearchSubject cannot become {new_status}"
            return [Issue("error", "business-rule", text, "ResearchSubject.status")]
        return []

    return {"ResearchSubject": [subject_status]}
