"""Scoring a QuestionnaireResponse into its score Observation (SDC observation extraction,
https://hl7.org/fhir/uv/sdc/extraction.html), with every rejected answer named by path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_bridge.domain.issues import Issue, has_errors
from fhir_bridge.errors import UnprocessableResourceError
from fhir_bridge.mapping.observations import RESEARCH_STUDY_EXT, score_observation
from fhir_bridge.mapping.questionnaires import TOTAL_LINK_ID
from fhir_bridge.mapping.spec import InstrumentSpec, ItemSpec, split_code

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

QR = "QuestionnaireResponse"
_STATUS = {"completed": "final", "amended": "amended", "in-progress": "preliminary"}


def _answer_score(
    spec: InstrumentSpec, item: ItemSpec, answer: Any, path: str
) -> tuple[int | None, Issue | None]:
    if not isinstance(answer, dict):
        return None, Issue("error", "structure", "answer must be an object", path)
    if "valueCoding" in answer and item.answers is not None:
        given = answer["valueCoding"] if isinstance(answer["valueCoding"], dict) else {}
        for option in spec.answer_sets[item.answers]:
            if split_code(option.code) == (given.get("system"), given.get("code")):
                return option.score, None
        return None, Issue(
            "error",
            "code-invalid",
            f"{spec.name} item {item.link_id}: answer code {given.get('code')!r} is not one of "
            "the item's answer options",
            f"{path}.valueCoding",
        )
    value = answer.get("valueInteger")
    if isinstance(value, bool) or not isinstance(value, int):
        kinds = "valueInteger or valueCoding" if item.answers else "valueInteger"
        return None, Issue(
            "error", "value", f"{spec.name} item {item.link_id}: answer must be {kinds}", path
        )
    if not item.min <= value <= item.max:
        return None, Issue(
            "error",
            "value",
            f"{spec.name} item {item.link_id}: {value} is outside {item.min}..{item.max}",
            f"{path}.valueInteger",
        )
    return value, None


def _walk_items(
    spec: InstrumentSpec,
    items: Any,
    path: str,
    values: dict[str, int],
    issues: list[Issue],
    totals: list[tuple[Any, str]],
) -> None:
    if not isinstance(items, list):
        issues.append(Issue("error", "structure", "item must be an array", path))
        return
    for index, entry in enumerate(items):
        item_path = f"{path}.item[{index}]"
        if not isinstance(entry, dict):
            issues.append(Issue("error", "structure", "item must be an object", item_path))
            continue
        if "item" in entry:
            _walk_items(spec, entry["item"], item_path, values, issues, totals)
        answers = entry.get("answer", [])
        if "item" in entry and not answers:
            continue
        link_id = entry.get("linkId")
        if link_id == TOTAL_LINK_ID:  # the form's calculated total: checked in read_response
            totals.append((answers, item_path))
            continue
        item = spec.item(link_id) if isinstance(link_id, str) else None
        if item is None:
            issues.append(
                Issue(
                    "error",
                    "not-found",
                    f"{spec.name} has no item with linkId {link_id!r}",
                    f"{item_path}.linkId",
                )
            )
            continue
        if item.link_id in values:
            issues.append(
                Issue(
                    "error",
                    "business-rule",
                    f"{spec.name} item {link_id} is answered twice",
                    item_path,
                )
            )
        for extra in range(1, len(answers)):
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"{spec.name} item {link_id}: one answer only",
                    f"{item_path}.answer[{extra}]",
                )
            )
        if answers:
            score, issue = _answer_score(spec, item, answers[0], f"{item_path}.answer[0]")
            if issue:
                issues.append(issue)
            elif score is not None:
                values[item.link_id] = score


def _check_total(
    spec: InstrumentSpec, values: dict[str, int], answers: Any, path: str
) -> Issue | None:
    """The total item's answer must be the total the items give: none while items are missing
    (no instrument defines prorating), else the scoring rule's value."""
    expected = spec.score(values)
    given = answers[0].get("valueInteger") if answers and isinstance(answers[0], dict) else None
    if not answers and expected is None:
        return None
    if expected is None:
        missing = ", ".join(spec.missing(values))
        text = f"{spec.name} item(s) {missing} missing: an incomplete administration has no total"
    elif given == expected and not isinstance(given, bool) and len(answers) == 1:
        return None
    else:
        text = f"{spec.name} total must be one valueInteger, the items give {expected}"
    return Issue("error", "invariant", text, f"{path}.answer")


def read_response(
    qr: dict[str, Any], m: Mappings
) -> tuple[InstrumentSpec | None, dict[str, int], list[Issue]]:
    """The instrument, item scores by linkId and issues of a QuestionnaireResponse."""
    canonical = qr.get("questionnaire")
    spec = m.instrument_for_questionnaire(canonical) if isinstance(canonical, str) else None
    if spec is None:
        return (
            None,
            {},
            [
                Issue(
                    "error",
                    "not-supported",
                    f"unknown questionnaire {canonical!r}",
                    f"{QR}.questionnaire",
                )
            ],
        )
    values: dict[str, int] = {}
    issues: list[Issue] = []
    totals: list[tuple[Any, str]] = []
    _walk_items(spec, qr.get("item", []), QR, values, issues, totals)
    if not issues:
        found = (_check_total(spec, values, answers, path) for answers, path in totals)
        issues += [issue for issue in found if issue is not None]
    if qr.get("status") not in _STATUS:
        issues.append(
            Issue(
                "error",
                "business-rule",
                f"a response with status {qr.get('status')!r} is not scored",
                f"{QR}.status",
            )
        )
    subject = qr.get("subject")
    if not isinstance(subject, dict) or not isinstance(subject.get("reference"), str):
        issues.append(
            Issue("error", "required", "subject.reference is required for scoring", f"{QR}.subject")
        )
    if not isinstance(qr.get("authored"), str):
        issues.append(
            Issue("error", "required", "authored is required for scoring", f"{QR}.authored")
        )
    return spec, values, issues


def _study_reference(resource: dict[str, Any]) -> str | None:
    for extension in resource.get("extension", []):
        if isinstance(extension, dict) and extension.get("url") == RESEARCH_STUDY_EXT:
            reference = extension.get("valueReference", {}).get("reference")
            return reference if isinstance(reference, str) else None
    return None


def score_response(qr: dict[str, Any], m: Mappings) -> list[dict[str, Any]]:
    """QuestionnaireResponse → its score Observation (a one-element list).

    The Observation's derivedFrom references the response by `qr["id"]` (a `urn:uuid:` id is
    used as is). Raises UnprocessableResourceError listing every bad answer by path.
    """
    spec, values, issues = read_response(qr, m)
    if spec is None or has_errors(issues):
        raise UnprocessableResourceError(issues=issues)
    qr_id = qr.get("id")
    derived_from = None
    if isinstance(qr_id, str) and qr_id:
        derived_from = qr_id if qr_id.startswith("urn:") else f"{QR}/{qr_id}"
    encounter = qr.get("encounter", {}).get("reference")
    return [
        score_observation(
            spec,
            values,
            spec.score(values),
            subject=qr["subject"]["reference"],
            effective=qr["authored"],
            status=_STATUS[qr["status"]],
            encounter=encounter if isinstance(encounter, str) else None,
            derived_from=derived_from,
            study=_study_reference(qr),
        )
    ]
