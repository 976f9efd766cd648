"""Clinical rules on resources posted directly: score ranges, total = sum of items, visits that
belong to the protocol, plausible MDMA doses. Returns issues, never raises."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.memo import Memo
from fhir_bridge.mapping.observations import RESEARCH_STUDY_EXT
from fhir_bridge.mapping.scoring import QR, read_response
from fhir_bridge.mapping.spec import SYSTEMS, UCUM, InstrumentSpec, split_code

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings


# Per instrument spec (two mapping folders may define one instrument differently): the item
# components already found valid, with their (link id, value).
_ITEMS: dict[int, tuple[InstrumentSpec, Memo]] = {}


def _items_memo(spec: InstrumentSpec) -> Memo:
    entry = _ITEMS.get(id(spec))
    if entry is None or entry[0] is not spec:
        entry = _ITEMS[id(spec)] = (spec, Memo())
    return entry[1]


def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [c for c in concept["coding"] if isinstance(c, dict)]


def _observation_instrument(obs: dict[str, Any], m: Mappings) -> InstrumentSpec | None:
    for c in _codings(obs.get("code")):
        spec = m.instrument_for_total(c.get("system"), c.get("code"))
        if spec is not None:
            return spec
    return None


def _check_components(
    spec: InstrumentSpec, obs: dict[str, Any]
) -> tuple[dict[str, int], list[Issue]]:
    values: dict[str, int] = {}
    issues: list[Issue] = []
    memo = _items_memo(spec)
    components = obs.get("component", [])
    for index, component in enumerate(components if isinstance(components, list) else []):
        # A component seen before as a valid item of this instrument: its item and value.
        key, known = memo.lookup(component)
        if known is None:
            known = _item_value(spec, component, f"Observation.component[{index}]", issues)
            if known is None:
                continue
            if key is not None:
                memo.remember(key, known)
        link_id, value = known
        if link_id in values:
            text = f"{spec.name} item {link_id} appears twice"
            issues.append(Issue("error", "business-rule", text, f"Observation.component[{index}]"))
        else:
            values[link_id] = value
    return values, issues


def _item_value(
    spec: InstrumentSpec, component: Any, path: str, issues: list[Issue]
) -> tuple[str, int] | None:
    """(link id, value) of a component that is a valid item of `spec`; else None, with issues."""
    found = (
        spec.item_for_code(c.get("system", ""), c.get("code", ""))
        for c in _codings(component.get("code"))
    )
    item = next((i for i in found if i is not None), None)
    if item is None:
        text = f"component code is not an item of {spec.name}"
        issues.append(Issue("error", "code-invalid", text, f"{path}.code"))
        return None
    value = component.get("valueInteger")
    if isinstance(value, bool) or not isinstance(value, int):
        text = f"{spec.name} item {item.link_id} needs valueInteger"
        issues.append(Issue("error", "value", text, path))
        return None
    if not item.min <= value <= item.max:
        text = f"{spec.name} item {item.link_id}: {value} is outside {item.min}..{item.max}"
        issues.append(Issue("error", "business-rule", text, f"{path}.valueInteger"))
        return None
    return item.link_id, value


def check_observation(obs: dict[str, Any], m: Mappings) -> list[Issue]:
    """Score Observation rules: item and total ranges, total = scoring rule over the items."""
    spec = _observation_instrument(obs, m)
    if spec is None:
        return []
    values, issues = _check_components(spec, obs)
    items_ok = not any(issue.is_error for issue in issues)
    if any(key.startswith("value") and key != "valueQuantity" for key in obs):
        issues.append(
            Issue(
                "error",
                "value",
                f"{spec.name} total must be a valueQuantity",
                "Observation.value[x]",
            )
        )
    quantity = obs.get("valueQuantity")
    if not isinstance(quantity, dict):
        return issues
    total = quantity.get("value")
    path = "Observation.valueQuantity"
    if quantity.get("system") != UCUM or quantity.get("code") != "{score}":
        issues.append(
            Issue("warning", "business-rule", "score totals use UCUM code {score}", f"{path}.code")
        )
    if isinstance(total, bool) or not isinstance(total, (int, float)) or total != int(total):
        issues.append(
            Issue("error", "value", f"{spec.name} total must be a whole number", f"{path}.value")
        )
        return issues
    if not spec.total.min <= total <= spec.total.max:
        issues.append(
            Issue(
                "error",
                "business-rule",
                f"{spec.name} total {total:g} is outside {spec.total.min}..{spec.total.max}",
                f"{path}.value",
            )
        )
    expected = spec.score(values) if items_ok else None
    if expected is not None and expected != total:
        rule = "the sum of the items" if spec.total.rule == "sum" else "the highest level"
        issues.append(
            Issue(
                "error",
                "invariant",
                f"{spec.name} total {total:g} is not {rule} ({expected})",
                f"{path}.value",
            )
        )
    return issues


def check_encounter(encounter: dict[str, Any], m: Mappings) -> list[Issue]:
    """A trial Encounter must carry a visit type of the protocol."""
    issues: list[Issue] = []
    found = False
    types = encounter.get("type", [])
    for t_index, concept in enumerate(types if isinstance(types, list) else []):
        for c_index, c in enumerate(_codings(concept)):
            if c.get("system") != SYSTEMS["visit"]:
                continue
            found = True
            if m.visit(str(c.get("code"))) is None:
                issues.append(
                    Issue(
                        "error",
                        "code-invalid",
                        f"visit {c.get('code')!r} is not in the study protocol",
                        f"Encounter.type[{t_index}].coding[{c_index}].code",
                    )
                )
    in_study = any(
        isinstance(e, dict) and e.get("url") == RESEARCH_STUDY_EXT
        for e in encounter.get("extension", [])
    )
    if in_study and not found:
        issues.append(
            Issue(
                "error",
                "business-rule",
                "a study Encounter needs a visit type from the protocol",
                "Encounter.type",
            )
        )
    return issues


def check_administration(admin: dict[str, Any], m: Mappings) -> list[Issue]:
    """MDMA administrations: dose in mg (UCUM), within the per-session maximum."""
    system, code = split_code(m.medication.code)
    concept = admin.get("medicationCodeableConcept")
    if not any(c.get("system") == system and c.get("code") == code for c in _codings(concept)):
        return []
    dose = admin.get("dosage", {}).get("dose") if isinstance(admin.get("dosage"), dict) else None
    path = "MedicationAdministration.dosage.dose"
    if not isinstance(dose, dict):
        return [Issue("error", "required", "an MDMA administration needs a dose", path)]
    issues = []
    if dose.get("system") != UCUM or dose.get("code") != "mg":
        issues.append(
            Issue("error", "business-rule", "MDMA dose must be in mg (UCUM)", f"{path}.code")
        )
    value = dose.get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        issues.append(
            Issue("error", "value", "MDMA dose must be a positive number", f"{path}.value")
        )
    elif value > m.medication.max_session_dose_mg:
        issues.append(
            Issue(
                "warning",
                "business-rule",
                f"MDMA dose {value:g} mg exceeds {m.medication.max_session_dose_mg} mg per session",
                f"{path}.value",
            )
        )
    return issues


def check_response(qr: dict[str, Any], m: Mappings) -> list[Issue]:
    """Answers of a response to a project Questionnaire: known items, answers in range."""
    if m.instrument_for_questionnaire(str(qr.get("questionnaire", ""))) is None:
        return []
    _, _, issues = read_response(qr, m)
    scoring_only = {f"{QR}.status", f"{QR}.subject", f"{QR}.authored"}
    return [issue for issue in issues if issue.expression not in scoring_only]


_RULES = {
    "Observation": check_observation,
    "Encounter": check_encounter,
    "MedicationAdministration": check_administration,
    "QuestionnaireResponse": check_response,
}


def check_clinical(resource: dict[str, Any], m: Mappings) -> list[Issue]:
    """Clinical issues of one resource; [] for resource types without rules."""
    rule = _RULES.get(str(resource.get("resourceType")))
    return rule(resource, m) if rule else []
