"""FHIR Questionnaires generated from the instrument specs (one per instrument)."""

from __future__ import annotations

from typing import Any

from fhir_bridge.mapping.spec import InstrumentSpec, ItemSpec, split_code

ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
CALCULATED_EXPRESSION = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
)
TOTAL_LINK_ID = "total"  # the read-only total item; not an item of the instrument's spec


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
        # what the total needs is required; SDS days items are recorded, not summed
        "required": item.link_id in spec.missing({}),
    }
    if item.answers is None:
        # An integer item lists its scores as options too (R4 que-5 allows answerOption on
        # integer items), each with its ordinalValue, so a form filler shows the scale.
        result["type"] = "integer"
        result["extension"] = [
            {"url": MIN_VALUE, "valueInteger": item.min},
            {"url": MAX_VALUE, "valueInteger": item.max},
        ]
        result["answerOption"] = [
            {"extension": [{"url": ORDINAL_VALUE, "valueDecimal": n}], "valueInteger": n}
            for n in range(item.min, item.max + 1)
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


def _answer_score(spec: InstrumentSpec) -> str:
    """FHIRPath giving an answer value's score: an integer is its own score, a Coding the
    ordinalValue of its option (spelled out: no weight() needed)."""
    scores: dict[str, int] = {}
    for options in spec.answer_sets.values():
        for option in options:
            code = split_code(option.code)[1]
            if scores.setdefault(code, option.score) != option.score:
                raise ValueError(f"{spec.name}: answer code {code} has two scores")
    lookup = "{}"
    for code, score in sorted(scores.items(), key=lambda kv: -kv[1]):
        lookup = f"iif(code = '{code}', {score}, {lookup})"
    return f"iif($this is Coding, {lookup}, $this)" if scores else "$this"


def total_expression(spec: InstrumentSpec) -> str:
    """The total as a FHIRPath expression over the QuestionnaireResponse (%resource), empty
    while an item the scoring rule needs is unanswered (no prorating, as the server scores).

    https://hl7.org/fhir/uv/sdc/behavior.html#calculatedExpression
    """
    needed = spec.missing({})
    score = _answer_score(spec)

    def answers(link_ids: list[str]) -> str:
        names = " | ".join(f"'{link_id}'" for link_id in link_ids)
        return f"%resource.repeat(item).where(linkId in ({names})).answer.value"

    if spec.total.rule == "sum":
        # aggregate(), not sum(): FHIRPath N1 has it, and more engines evaluate it
        value = f"{answers(needed)}.select({score}).aggregate($total + $this, 0)"
    else:  # the position of the last item scored above its minimum
        value = "0"
        for position, item in enumerate(spec.items, 1):
            value = (
                f"iif({answers([item.link_id])}.select({score}) > {item.min}, {position}, {value})"
            )
    return f"iif({answers(needed)}.count() = {len(needed)}, {value}, {{}})"


def _total_item(spec: InstrumentSpec) -> dict[str, Any]:
    return {
        "extension": [
            {
                "url": CALCULATED_EXPRESSION,
                "valueExpression": {
                    "description": f"{spec.name} total: {spec.missing_items}",
                    "language": "text/fhirpath",
                    "expression": total_expression(spec),
                },
            }
        ],
        "linkId": TOTAL_LINK_ID,
        "code": [coding(spec.total.code, spec.total.display)],
        "text": spec.total.display,
        "type": "integer",
        "required": False,
        "readOnly": True,
    }


def questionnaire(spec: InstrumentSpec, version: str) -> dict[str, Any]:
    """The instrument as a Questionnaire at the package `version`, following SDC: answers score
    per item (ordinalValue), a read-only total item with its calculatedExpression, the
    instrument's code, required items and the copyright where the instrument has one.

    https://hl7.org/fhir/R4/questionnaire.html, https://hl7.org/fhir/uv/sdc/
    """
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": spec.id,
        "url": spec.questionnaire_url,
        "version": version,
        "name": spec.name.replace("-", ""),
        "title": spec.title,
        "status": "active",
        "subjectType": ["Patient"],
        "description": f"{spec.description}\n\nRater: {spec.rater}; recall: {spec.recall}.\n\n"
        "Sources: " + "; ".join(spec.source),
    }
    if spec.copyright:
        resource["copyright"] = spec.copyright
    if spec.panel_code:
        resource["code"] = [coding(spec.panel_code)]
    resource["item"] = [*(_item(spec, item) for item in spec.items), _total_item(spec)]
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
