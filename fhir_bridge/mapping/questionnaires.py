"""FHIR Questionnaires generated from the instrument specs (one per instrument)."""

from __future__ import annotations

from typing import Any

from fhir_bridge.mapping.spec import InstrumentSpec, ItemSpec, split_code

ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"


def coding(ref: str, display: str | None = None) -> dict[str, str]:
    """A Coding from a `prefix:code` reference."""
    system, code = split_code(ref)
    result = {"system": system, "code": code}
    if display:
        result["display"] = display
    return result


def _item(spec: InstrumentSpec, item: ItemSpec) -> dict[str, Any]:
    result: dict[str, Any] = {
        "linkId": item.link_id,
        "code": [coding(item.code)],
        "text": item.text,
        "required": False,
    }
    if item.answers is None:
        result["type"] = "integer"
        result["extension"] = [
            {"url": MIN_VALUE, "valueInteger": item.min},
            {"url": MAX_VALUE, "valueInteger": item.max},
        ]
    else:
        result["type"] = "choice"
        result["answerOption"] = [
            {
                "extension": [{"url": ORDINAL_VALUE, "valueDecimal": option.score}],
                "valueCoding": coding(option.code, option.display),
            }
            for option in spec.answer_sets[item.answers]
        ]
    return result


def questionnaire(spec: InstrumentSpec) -> dict[str, Any]:
    """The instrument as a Questionnaire; answers score per item (ordinalValue for choices).

    https://hl7.org/fhir/R4/questionnaire.html
    """
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": spec.id,
        "url": spec.questionnaire_url,
        "version": spec.version,
        "name": spec.name.replace("-", ""),
        "title": spec.title,
        "status": "active",
        "subjectType": ["Patient"],
        "description": f"{spec.description}\n\nRater: {spec.rater}; recall: {spec.recall}.\n\n"
        "Sources: " + "; ".join(spec.source),
    }
    if spec.panel_code:
        resource["code"] = [coding(spec.panel_code)]
    resource["item"] = [_item(spec, item) for item in spec.items]
    return resource


def response(
    spec: InstrumentSpec,
    values: dict[str, int],
    *,
    subject: str,
    authored: str,
    encounter: str | None = None,
    study: str | None = None,
    status: str = "completed",
) -> dict[str, Any]:
    """A QuestionnaireResponse answering the instrument's Questionnaire with item scores
    (choice items answered with their coded option). https://hl7.org/fhir/R4/questionnaireresponse.html
    """
    qr: dict[str, Any] = {"resourceType": "QuestionnaireResponse"}
    if study:
        qr["extension"] = [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy",
                "valueReference": {"reference": study},
            }
        ]
    qr |= {
        "questionnaire": spec.questionnaire_url,
        "status": status,
        "subject": {"reference": subject},
    }
    if encounter:
        qr["encounter"] = {"reference": encounter}
    qr["authored"] = authored
    items = []
    for item in spec.items:
        if item.link_id not in values:
            continue
        value = values[item.link_id]
        if item.answers is None:
            answer: dict[str, Any] = {"valueInteger": value}
        else:
            option = next(o for o in spec.answer_sets[item.answers] if o.score == value)
            answer = {"valueCoding": coding(option.code, option.display)}
        items.append({"linkId": item.link_id, "text": item.text, "answer": [answer]})
    qr["item"] = items
    return qr
