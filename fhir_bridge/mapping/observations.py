"""The score Observation: one per administered instrument, total as valueQuantity and one
component per item.

Components rather than hasMember: one resource per administration keeps the total and its items
atomic (created, versioned and deleted together) and lets a profile invariant check that the
total equals the sum of the items inside a single resource.
"""

from __future__ import annotations

from typing import Any

from fhir_bridge.mapping.questionnaires import coding
from fhir_bridge.mapping.spec import SYSTEMS, UCUM, InstrumentSpec

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
RESEARCH_STUDY_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"

SURVEY = {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}


def study_extension(study_reference: str) -> dict[str, Any]:
    """The workflow-researchStudy extension linking an event to the ResearchStudy."""
    return {"url": RESEARCH_STUDY_EXT, "valueReference": {"reference": study_reference}}


def score_observation(
    spec: InstrumentSpec,
    values: dict[str, int],
    total: int | None,
    *,
    subject: str,
    effective: str,
    status: str = "final",
    encounter: str | None = None,
    derived_from: str | None = None,
    study: str | None = None,
    identifier: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build the score Observation for one administration (items keyed by linkId).

    A missing total (items incomplete, or not recorded) is stated with dataAbsentReason.
    https://hl7.org/fhir/R4/observation.html
    """
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {"profile": [spec.profile_url]},
    }
    if study:
        obs["extension"] = [study_extension(study)]
    if identifier:
        obs["identifier"] = [identifier]
    obs["status"] = status
    obs["category"] = [SURVEY]
    obs["code"] = {"coding": [coding(spec.total.code, spec.total.display)], "text": spec.name}
    obs["subject"] = {"reference": subject}
    if encounter:
        obs["encounter"] = {"reference": encounter}
    obs["effectiveDateTime"] = effective
    if total is None:
        obs["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT_REASON, "code": "unknown"}]}
    else:
        obs["valueQuantity"] = {
            "value": total,
            "unit": "{score}",
            "system": UCUM,
            "code": "{score}",
        }
    interpretation = spec.interpretation(values, total)
    if interpretation:
        code, display = interpretation
        obs["interpretation"] = [
            {"coding": [{"system": SYSTEMS["severity"], "code": code, "display": display}]}
        ]
    if derived_from:
        obs["derivedFrom"] = [{"reference": derived_from}]
    components = [
        {
            "code": {"coding": [coding(item.code)], "text": item.text},
            "valueInteger": values[item.link_id],
        }
        for item in spec.items
        if item.link_id in values
    ]
    if components:
        obs["component"] = components
    return obs


def component_values(spec: InstrumentSpec, obs: dict[str, Any]) -> dict[str, int]:
    """Item values (by linkId) read back from a score Observation's components."""
    values: dict[str, int] = {}
    for component in obs.get("component", []):
        for c in component.get("code", {}).get("coding", []):
            item = spec.item_for_code(c.get("system", ""), c.get("code", ""))
            if item is not None and isinstance(component.get("valueInteger"), int):
                values[item.link_id] = component["valueInteger"]
                break
    return values


def total_value(obs: dict[str, Any]) -> int | None:
    """The total of a score Observation as an int, None when absent."""
    value = obs.get("valueQuantity", {}).get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if float(value).is_integer() else None
