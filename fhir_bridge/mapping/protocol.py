"""The study as FHIR: ResearchStudy, the PlanDefinition holding the visit schedule (one action
per visit, with timing windows and the instruments collected) and the MDMA Medication."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_bridge.mapping.questionnaires import coding
from fhir_bridge.mapping.spec import CANONICAL, SID, UCUM, VisitSpec

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
EUDRACT_SYSTEM = f"{SID}/eudract-number"
SPONSOR_PROTOCOL_SYSTEM = f"{SID}/sponsor-protocol"


def study_identifier(m: Mappings) -> dict[str, str]:
    """The identifier used for conditional creates of the ResearchStudy (EudraCT number)."""
    return {"system": EUDRACT_SYSTEM, "value": m.protocol.study.eudract}


def research_study(m: Mappings) -> dict[str, Any]:
    """The ResearchStudy. https://hl7.org/fhir/R4/researchstudy.html"""
    study = m.protocol.study
    return {
        "resourceType": "ResearchStudy",
        "id": m.protocol.id,
        "identifier": [
            {**study_identifier(m), "type": {"text": "EudraCT number"}},
            {
                "system": SPONSOR_PROTOCOL_SYSTEM,
                "value": study.sponsor_protocol,
                "type": {"text": "Sponsor protocol code"},
            },
        ],
        "title": study.title,
        "protocol": [{"reference": f"PlanDefinition/{m.protocol.id}-schedule"}],
        "status": study.status,
        "primaryPurposeType": {
            "coding": [
                {
                    "system": f"{TERMINOLOGY}/research-study-prim-purp-type",
                    "code": study.primary_purpose,
                }
            ]
        },
        "phase": {
            "coding": [{"system": f"{TERMINOLOGY}/research-study-phase", "code": study.phase}]
        },
        "condition": [{"coding": [coding(study.condition, study.condition_display)]}],
        "relatedArtifact": [
            {"type": "citation", "citation": c.citation, "url": c.url} for c in study.citations
        ],
        "description": study.description,
        "period": {"start": study.start},
        "sponsor": {"display": study.sponsor},
        "site": [{"display": study.site}],
        "arm": [{"name": study.arm.name, "description": study.arm.description}],
        "objective": [
            {
                "name": o.name,
                "type": {
                    "coding": [
                        {"system": f"{TERMINOLOGY}/research-study-objective-type", "code": o.type}
                    ]
                },
            }
            for o in study.objectives
        ],
    }


def _days(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "d", "system": UCUM, "code": "d"}


def _action(visit: VisitSpec, m: Mappings) -> dict[str, Any]:
    action: dict[str, Any] = {
        "id": visit.code,
        "prefix": visit.visit,
        "title": visit.display,
        "description": f"Timing: {visit.timing_source}.",
        "code": [{"coding": [coding(f"visit:{visit.code}", visit.display)]}],
    }
    if visit.anchor is not None:
        relationship = "after-start" if visit.offset_days >= 0 else "before-start"
        offset = abs(visit.offset_days)
        action["relatedAction"] = [
            {
                "actionId": visit.anchor,
                "relationship": relationship,
                "offsetRange": {
                    "low": _days(max(offset - visit.window_days, 0)),
                    "high": _days(offset + visit.window_days),
                },
            }
        ]
    if visit.instruments:
        action["action"] = [
            {
                "title": m.instrument(i).name,
                "definitionCanonical": m.instrument(i).questionnaire_url,
            }
            for i in visit.instruments
        ]
    return action


def plan_definition(m: Mappings) -> dict[str, Any]:
    """The visit schedule as a clinical-protocol PlanDefinition (actions in protocol order).

    https://hl7.org/fhir/R4/plandefinition.html
    """
    return {
        "resourceType": "PlanDefinition",
        "id": f"{m.protocol.id}-schedule",
        "url": f"{CANONICAL}/PlanDefinition/{m.protocol.id}-schedule",
        "version": m.ig.version,
        "name": "PsykforskMatMddSchedule",
        "title": f"Visit schedule of {m.protocol.study.sponsor_protocol}",
        "type": {
            "coding": [
                {"system": f"{TERMINOLOGY}/plan-definition-type", "code": "clinical-protocol"}
            ]
        },
        "status": "active",
        "description": "Protocol visits in order with timing windows relative to their anchor "
        f"visit and the instruments collected. Instruments: {m.protocol.instrument_schedule_source}"
        ". Sources: " + "; ".join(m.protocol.source),
        "action": [_action(visit, m) for visit in m.protocol.visits],
    }


def medication(m: Mappings) -> dict[str, Any]:
    """The study drug: MDMA coded by FDA UNII. https://hl7.org/fhir/R4/medication.html"""
    return {
        "resourceType": "Medication",
        "id": m.medication.id,
        "meta": {"profile": [f"{CANONICAL}/StructureDefinition/mdma-medication"]},
        "code": {"coding": [coding(m.medication.code)], "text": m.medication.text},
    }
