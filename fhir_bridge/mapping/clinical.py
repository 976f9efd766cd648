"""Clinical rules on resources posted directly: score ranges, total = sum of items, visits that
belong to the protocol, plausible MDMA doses. Returns issues, never raises."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.memo import Memo
from fhir_bridge.mapping.observations import RESEARCH_STUDY_EXT
from fhir_bridge.mapping.schedule import in_future
from fhir_bridge.mapping.scoring import QR, read_response
from fhir_bridge.mapping.spec import SYSTEMS, UCUM, InstrumentSpec, split_code

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings


DOSE_ABOVE_MAXIMUM = "dose-above-session-maximum"  # mappings/codesystems/data-quality.json

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


def score_instrument(obs: dict[str, Any], m: Mappings) -> InstrumentSpec | None:
    """The instrument whose total an Observation's code names, if any."""
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
    """Score Observation rules: item and total ranges, total = scoring rule over the items,
    a severity interpretation that is the band of the total (or the item rule's verdict)."""
    spec = score_instrument(obs, m)
    if spec is None:
        return []
    values, issues = _check_total(spec, obs)
    if not any(issue.is_error for issue in issues):
        issues += _check_interpretation(spec, obs, values)
    return issues + _not_in_future(obs, ("effectiveDateTime",))


def _expected_interpretation(
    spec: InstrumentSpec, obs: dict[str, Any], values: dict[str, int]
) -> tuple[str, str] | None:
    """The interpretation of a score Observation whose total and items passed _check_total."""
    quantity = obs.get("valueQuantity")
    total = quantity.get("value") if isinstance(quantity, dict) else None
    return spec.interpretation(values, int(total) if isinstance(total, (int, float)) else None)


def _check_interpretation(
    spec: InstrumentSpec, obs: dict[str, Any], values: dict[str, int]
) -> list[Issue]:
    expected = _expected_interpretation(spec, obs, values)
    interpretations = obs.get("interpretation")
    if expected is None or not isinstance(interpretations, list):
        return []
    issues = []
    for i, concept in enumerate(interpretations):
        for j, c in enumerate(_codings(concept)):
            if c.get("system") == SYSTEMS["severity"] and c.get("code") != expected[0]:
                issues.append(
                    Issue(
                        "error",
                        "invariant",
                        f"{spec.name} interpretation {c.get('code')!r} does not match the score: "
                        f"it is {expected[0]!r} ({expected[1]})",
                        f"Observation.interpretation[{i}].coding[{j}].code",
                    )
                )
    return issues


def interpret(obs: dict[str, Any], m: Mappings) -> dict[str, Any]:
    """A score Observation without an interpretation gets the one its score has (a copy);
    anything else is returned as is.

    https://hl7.org/fhir/R4/observation-definitions.html#Observation.interpretation
    """
    if obs.get("resourceType") != "Observation" or "interpretation" in obs:
        return obs
    try:
        spec = score_instrument(obs, m)
        if spec is None:
            return obs
        values, issues = _check_total(spec, obs)
    except (AttributeError, KeyError, TypeError, ValueError):
        return obs  # malformed: the validator refuses it
    if any(issue.is_error for issue in issues):
        return obs  # refused by the rules anyway: nothing to derive from
    expected = _expected_interpretation(spec, obs, values)
    if expected is None:
        return obs
    coding = {"system": SYSTEMS["severity"], "code": expected[0], "display": expected[1]}
    return {**obs, "interpretation": [{"coding": [coding]}]}


def may_interpret(raw: bytes, m: Mappings) -> bool:
    """Whether the JSON text `raw` may hold a score Observation (a total code occurs in it, or
    a backslash that might spell one)."""
    codes = m.cached("total_codes", lambda: [s.total_coding[1].encode() for s in m.instruments])
    return b"\\" in raw or any(code in raw for code in codes)


def _check_total(spec: InstrumentSpec, obs: dict[str, Any]) -> tuple[dict[str, int], list[Issue]]:
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
        return values, issues
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
        return values, issues
    if not spec.total.min <= total <= spec.total.max:
        issues.append(
            Issue(
                "error",
                "business-rule",
                f"{spec.name} total {total:g} is outside {spec.total.min}..{spec.total.max}",
                f"{path}.value",
            )
        )
    if not items_ok or not values:
        return values, issues  # a total without items is taken as recorded
    expected = spec.score(values)
    if expected is None:
        # No instrument's scoring rules define prorating (`missing_items` in each file of
        # mappings/instruments/): a total over missing items would be a guess.
        missing = ", ".join(spec.missing(values))
        issues.append(
            Issue(
                "error",
                "invariant",
                f"{spec.name} item(s) {missing} missing: an incomplete administration has no "
                "total (its scoring rules define no prorating)",
                f"{path}.value",
            )
        )
    elif expected != total:
        rule = "the sum of the items" if spec.total.rule == "sum" else "the highest level"
        issues.append(
            Issue(
                "error",
                "invariant",
                f"{spec.name} total {total:g} is not {rule} ({expected})",
                f"{path}.value",
            )
        )
    return values, issues


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
    issues += _not_in_future(encounter, ("period", "start"))
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


def _not_in_future(resource: dict[str, Any], path: tuple[str, ...]) -> list[Issue]:
    """A visit or assessment dated later than today anywhere is refused: it cannot have
    happened yet (a typo in the year, most often)."""
    value: Any = resource
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if not in_future(value):
        return []
    where = ".".join((str(resource.get("resourceType")), *path))
    return [Issue("error", "business-rule", f"{value} is in the future", where)]


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
    # The per-session maximum is a rule over the session's doses: session_dose_findings.
    return issues


# Administrations that did not happen, or were recorded in error, give no dose.
_NOT_GIVEN = ("not-done", "entered-in-error")


def mdma_dose(admin: dict[str, Any], m: Mappings) -> float | None:
    """The mg an MDMA administration gave; None for another drug, one not given, or a dose
    not in mg (which check_administration refuses)."""
    system, code = split_code(m.medication.code)
    concept = admin.get("medicationCodeableConcept")
    if not any(c.get("system") == system and c.get("code") == code for c in _codings(concept)):
        return None
    if admin.get("status") in _NOT_GIVEN or not isinstance(admin.get("dosage"), dict):
        return None
    dose = admin["dosage"].get("dose")
    if not isinstance(dose, dict) or dose.get("system") != UCUM or dose.get("code") != "mg":
        return None
    value = dose.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


def session_dose_findings(
    admin: dict[str, Any], session_mg: float, m: Mappings
) -> tuple[list[Issue], list[dict[str, str]]]:
    """A warning and a data-quality tag when the session's MDMA doses, this one's included
    (`session_mg`), exceed the protocol's per-session maximum: the dose was given, so it is
    stored, and flagged."""
    limit = m.medication.max_session_dose_mg
    if session_mg <= limit:
        return [], []
    context = admin.get("context")
    encounter = context.get("reference") if isinstance(context, dict) else None
    where = f"session {encounter}" if isinstance(encounter, str) else "administration"
    text = (
        f"MDMA doses of the {where} add up to {session_mg:g} mg, above the protocol's "
        f"maximum of {limit} mg per session"
    )
    issue = Issue("warning", "business-rule", text, "MedicationAdministration.dosage.dose.value")
    tag = {
        "system": SYSTEMS["data-quality"],
        "code": DOSE_ABOVE_MAXIMUM,
        "display": "MDMA dose above the per-session maximum",
    }
    return [issue], [tag]


def check_response(qr: dict[str, Any], m: Mappings) -> list[Issue]:
    """Answers of a response to a project Questionnaire: known items, answers in range."""
    if m.instrument_for_questionnaire(str(qr.get("questionnaire", ""))) is None:
        return []
    _, _, issues = read_response(qr, m)
    scoring_only = {f"{QR}.status", f"{QR}.subject", f"{QR}.authored"}
    found = [issue for issue in issues if issue.expression not in scoring_only]
    return found + _not_in_future(qr, ("authored",))


def check_medication(medication: dict[str, Any], m: Mappings) -> list[Issue]:
    """A Medication named as the study drug (its INN, abbreviation or chemical name, in
    code.text or a display) must carry the drug's UNII: a wrong code would hide doses."""
    concept = medication.get("code")
    texts = [concept.get("text")] if isinstance(concept, dict) else []
    texts += [c.get("display") for c in _codings(concept)]
    names = [name.lower() for name in m.medication.names]
    if not any(isinstance(t, str) and any(n in t.lower() for n in names) for t in texts):
        return []
    system, code = split_code(m.medication.code)
    if any(c.get("system") == system and c.get("code") == code for c in _codings(concept)):
        return []
    return [
        Issue(
            "error",
            "code-invalid",
            f"a Medication named {m.medication.text} must be coded {system}|{code} (its UNII)",
            "Medication.code",
        )
    ]


_RULES = {
    "Observation": check_observation,
    "Encounter": check_encounter,
    "MedicationAdministration": check_administration,
    "Medication": check_medication,
    "QuestionnaireResponse": check_response,
}


def check_clinical(resource: dict[str, Any], m: Mappings) -> list[Issue]:
    """Clinical issues of one resource; [] for resource types without rules."""
    rule = _RULES.get(str(resource.get("resourceType")))
    return rule(resource, m) if rule else []
