"""Core FHIRPath invariants: hand-compiled Python for the hot ones, cached fhirpathpy for the rest.

The hand-compiled functions implement the expressions of the R4 StructureDefinitions
(https://hl7.org/fhir/R4/conformance-rules.html#constraints); each takes the element dict and
the validation context and returns True when the invariant holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_bridge.validation.definitions import choice_names
from fhir_bridge.validation.fhirpath import Unsupported, compile_fhirpath


class InvariantContext(Protocol):
    resource: dict[str, Any]
    root: dict[str, Any]

    def contained_types(self) -> dict[str, Any]: ...


Rule = Callable[[dict[str, Any], InvariantContext], bool]


def _hash_refs(value: Any, found: set[str]) -> None:
    # dom-3 looks at every reference, canonical and uri in the resource, contained ones included.
    if isinstance(value, dict):
        for v in value.values():
            _hash_refs(v, found)
    elif isinstance(value, list):
        for v in value:
            _hash_refs(v, found)
    elif isinstance(value, str) and value.startswith("#"):
        found.add(value)


def _items(value: Any) -> list[Any]:
    """A JSON array's items; anything else (malformed, already reported) counts as empty."""
    return value if isinstance(value, list) else []


def dom_2(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return not any(
        isinstance(c, dict) and c.get("contained") for c in _items(node.get("contained"))
    )


def dom_3(node: dict[str, Any], ctx: InvariantContext) -> bool:
    contained = _items(node.get("contained"))
    if not contained:
        return True
    found: set[str] = set()
    _hash_refs({k: v for k, v in node.items() if k != "contained"}, found)
    for c in contained:
        if not isinstance(c, dict):
            continue
        inner: set[str] = set()
        _hash_refs(c, inner)
        found |= inner
    for c in contained:
        if not isinstance(c, dict):
            continue
        inner = set()
        _hash_refs(c, inner)
        if f"#{c.get('id')}" not in found and "#" not in inner:
            return False
    return True


def _contained_meta(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c["meta"]
        for c in _items(node.get("contained"))
        if isinstance(c, dict) and isinstance(c.get("meta"), dict)
    ]


def dom_4(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return not any("versionId" in m or "lastUpdated" in m for m in _contained_meta(node))


def dom_5(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return not any("security" in m for m in _contained_meta(node))


def dom_6(node: dict[str, Any], ctx: InvariantContext) -> bool:
    text = node.get("text")
    return isinstance(text, dict) and "div" in text


# Every JSON name a value[x] can take, with its primitive-extension twin.
VALUE_KEYS = choice_names("value") | choice_names("_value")


def _has_value(node: dict[str, Any]) -> bool:
    return not VALUE_KEYS.isdisjoint(node)


def ext_1(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return ("extension" in node) != _has_value(node)


def obs_6(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return "dataAbsentReason" not in node or not _has_value(node)


def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in _items(concept.get("coding")) if isinstance(c, dict)]


def obs_7(node: dict[str, Any], ctx: InvariantContext) -> bool:
    components = node.get("component")
    if type(components) is not list or VALUE_KEYS.isdisjoint(node):
        return True
    own = _codings(ctx.resource.get("code"))
    if not own:
        return True
    try:
        keys = {(c.get("system"), c.get("code")) for c in own}
        for component in components:
            code = component.get("code") if type(component) is dict else None
            codings = code.get("coding") if type(code) is dict else None
            for coding in codings if type(codings) is list else ():
                # FHIRPath intersect() compares whole Codings; equal dicts are equal Codings.
                if (
                    type(coding) is dict
                    and (coding.get("system"), coding.get("code")) in keys
                    and coding in own
                ):
                    return False
    except TypeError:  # unhashable system/code: malformed, reported by the walk
        return True
    return True


def ref_1(node: dict[str, Any], ctx: InvariantContext) -> bool:
    reference = node.get("reference")
    if not isinstance(reference, str) or not reference.startswith("#"):
        return True
    return reference[1:] in ctx.contained_types()


def _instant(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def per_1(node: dict[str, Any], ctx: InvariantContext) -> bool:
    start, end = node.get("start"), node.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    if len(start) <= 10 and len(start) == len(end):
        return start <= end
    if len(start) <= 10 or len(end) <= 10:
        # Different precisions compare as empty in FHIRPath: the invariant does not fail.
        return True
    a, b = _instant(start), _instant(end)
    if a is None or b is None or (a.tzinfo is None) != (b.tzinfo is None):
        return True
    return a <= b


def qty_3(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return "code" not in node or "system" in node


def rng_2(node: dict[str, Any], ctx: InvariantContext) -> bool:
    low, high = node.get("low"), node.get("high")
    if not isinstance(low, dict) or not isinstance(high, dict):
        return True
    lv, hv = low.get("value"), high.get("value")
    if not isinstance(lv, (int, float)) or not isinstance(hv, (int, float)):
        return True
    if low.get("code", low.get("unit")) != high.get("code", high.get("unit")):
        return True
    return bool(lv <= hv)


def att_1(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return "data" not in node or "contentType" in node


def cpt_2(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return "value" not in node or "system" in node


def bdl_1(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return "total" not in node or node.get("type") in ("searchset", "history")


def _entries(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in _items(node.get("entry")) if isinstance(e, dict)]


def bdl_2(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return node.get("type") == "searchset" or not any("search" in e for e in _entries(node))


def bdl_3(node: dict[str, Any], ctx: InvariantContext) -> bool:
    wanted = node.get("type") in ("batch", "transaction", "history")
    return all(("request" in e) == wanted for e in _entries(node))


def bdl_4(node: dict[str, Any], ctx: InvariantContext) -> bool:
    wanted = node.get("type") in ("batch-response", "transaction-response", "history")
    return all(("response" in e) == wanted for e in _entries(node))


def bdl_5(node: dict[str, Any], ctx: InvariantContext) -> bool:
    return "resource" in node or "request" in node or "response" in node


def bdl_7(node: dict[str, Any], ctx: InvariantContext) -> bool:
    if node.get("type") == "history":
        return True
    seen: set[tuple[Any, Any]] = set()
    for e in _entries(node):
        if "fullUrl" not in e:
            continue
        resource = e.get("resource")
        meta = resource.get("meta") if isinstance(resource, dict) else None
        key = (e["fullUrl"], meta.get("versionId") if isinstance(meta, dict) else None)
        if key in seen:
            return False
        seen.add(key)
    return True


def bdl_8(node: dict[str, Any], ctx: InvariantContext) -> bool:
    full_url = node.get("fullUrl")
    return not isinstance(full_url, str) or "/_history/" not in full_url


def que_7(node: dict[str, Any], ctx: InvariantContext) -> bool:
    # fhirpathpy does not resolve `answer is Boolean` against the answer[x] choice.
    return node.get("operator") != "exists" or "answerBoolean" in node


# Hand-compiled invariants that read the enclosing resource (obs-7: %resource.code), not just
# the element they sit on.
CONTEXT_RULES = frozenset({"obs-7"})
# ref-1 reads the enclosing resource for local `#` references only, which are never remembered
# (see domain/memo.py).
LOCAL_REFERENCE_RULE = "ref-1"


def reads_resource(key: str, expression: str) -> bool:
    """Whether an invariant reads more than its element: %resource, %rootResource, obs-7."""
    if key in CONTEXT_RULES:
        return True
    return key != LOCAL_REFERENCE_RULE and "%r" in expression


HAND_COMPILED: dict[str, Rule] = {
    "dom-2": dom_2,
    "dom-3": dom_3,
    "dom-4": dom_4,
    "dom-5": dom_5,
    "dom-6": dom_6,
    "ext-1": ext_1,
    "obs-6": obs_6,
    "obs-7": obs_7,
    "ref-1": ref_1,
    "per-1": per_1,
    "qty-3": qty_3,
    "rng-2": rng_2,
    "att-1": att_1,
    "cpt-2": cpt_2,
    "bdl-1": bdl_1,
    "bdl-2": bdl_2,
    "bdl-3": bdl_3,
    "bdl-4": bdl_4,
    "bdl-5": bdl_5,
    "bdl-7": bdl_7,
    "bdl-8": bdl_8,
    "que-7": que_7,
}

# Hand-compiled invariants that hold whenever their element lacks this key: the walk skips
# the call then.
HOLDS_WITHOUT: dict[str, str] = {
    "dom-2": "contained",
    "dom-3": "contained",
    "dom-4": "contained",
    "dom-5": "contained",
    "obs-6": "dataAbsentReason",
    "obs-7": "component",
    "ref-1": "reference",
    "per-1": "start",
    "qty-3": "code",
    "rng-2": "low",
    "att-1": "data",
    "cpt-2": "value",
    "bdl-1": "total",
    "bdl-2": "entry",
    "bdl-4": "entry",
    "bdl-8": "fullUrl",
    "que-7": "operator",
}

# Checked elsewhere (narrative in the xhtml checker), or unevaluable without the spec's
# custom functions.
NOT_EVALUATED = frozenset({"txt-1", "txt-2"})


def _quiet(*args: Any) -> None:
    return None


class FHIRPathRule:
    """A constraint evaluated by fhirpathpy, compiled once per (expression, base path)."""

    __slots__ = ("_fn", "_base")

    def __init__(self, expression: str, base: str) -> None:
        # trace() in core expressions would print to stdout without a trace function.
        self._fn = fhirpathpy.compile(expression, models["r4"], {"traceFn": _quiet})
        self._base = base

    def __call__(self, node: dict[str, Any], ctx: InvariantContext) -> bool:
        try:
            result = self._fn(
                ResourceNode.create_node(node, self._base),  # type: ignore[no-untyped-call]
                {"resource": ctx.resource, "rootResource": ctx.root},
            )
        except Exception:  # noqa: BLE001 - an engine failure must not fail the resource
            # This value only (the walk reports what is malformed in it): the rule still
            # holds every other resource to account.
            return True
        return not (len(result) == 1 and result[0] is False)


class CompiledRule:
    """A constraint compiled to Python closures (fhirpath.py); fhirpathpy where that fails."""

    __slots__ = ("_run", "_expression", "_base", "_fallback")

    def __init__(self, run: Callable[[Any, dict[str, Any]], list[Any]], expression: str, base: str):
        self._run = run
        self._expression = expression
        self._base = base
        self._fallback: FHIRPathRule | None = None

    def __call__(self, node: dict[str, Any], ctx: InvariantContext) -> bool:
        env = {"resource": ctx.resource, "rootResource": ctx.root, "context": node}
        try:
            result = self._run(node, env)
        except Exception:  # noqa: BLE001 - outside the compiled subset at run time
            if self._fallback is None:
                self._fallback = FHIRPathRule(self._expression, self._base)
            return self._fallback(node, ctx)
        return not (len(result) == 1 and result[0] is False)


_compiled: dict[tuple[str, str], Rule] = {}


# The score profiles' constraints (mapping/profiles.py), recognised by their exact text. Their
# fast forms below answer well-formed values and hand anything else to the general evaluator
# (bench/instructions.py: 1,103k -> 1,067k instructions per MADRS score).
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_QUANTITY_RANGE = re.compile(
    rf"valueQuantity\.exists\(\) implies \(valueQuantity\.value >= {_NUMBER} "
    rf"and valueQuantity\.value <= {_NUMBER}\)"
)
_COMPONENT_SUM = re.compile(
    r"\(component\.count\(\) = (\d+) and valueQuantity\.exists\(\)\) implies "
    r"\(valueQuantity\.value = component\.valueInteger\.aggregate\(\$this \+ \$total, 0\)\)"
)


class QuantityRange:
    """`valueQuantity.exists() implies (valueQuantity.value >= low and ... <= high)`."""

    __slots__ = ("low", "high", "general")

    def __init__(self, low: float, high: float, general: Rule) -> None:
        self.low = low
        self.high = high
        self.general = general

    def __call__(self, node: dict[str, Any], ctx: InvariantContext) -> bool:
        quantity = node.get("valueQuantity")
        if quantity is None:
            return True
        if type(quantity) is dict:
            value = quantity.get("value")
            if type(value) is int or type(value) is float:
                return bool(self.low <= value <= self.high)
        return self.general(node, ctx)


class ComponentSum:
    """`(component.count() = count and valueQuantity.exists()) implies
    (valueQuantity.value = component.valueInteger.aggregate($this + $total, 0))`."""

    __slots__ = ("count", "general")

    def __init__(self, count: int, general: Rule) -> None:
        self.count = count
        self.general = general

    def __call__(self, node: dict[str, Any], ctx: InvariantContext) -> bool:
        components = node.get("component")
        quantity = node.get("valueQuantity")
        if type(components) is not list or type(quantity) is not dict:
            return self.general(node, ctx)
        if len(components) != self.count:
            return True
        total = 0
        for component in components:
            if type(component) is not dict:
                return self.general(node, ctx)
            item = component.get("valueInteger")
            if type(item) is int:
                total += item
            elif item is not None:  # not an integer (a boolean too): the general rule
                return self.general(node, ctx)
        value = quantity.get("value")
        if type(value) is int or type(value) is float:
            return bool(value == total)
        return self.general(node, ctx)


def _fast_form(expression: str, general: Rule) -> Rule:
    """`general`, or its fast form where the expression is one of the score constraints."""
    found = _QUANTITY_RANGE.fullmatch(expression)
    if found is not None:
        return QuantityRange(float(found.group(1)), float(found.group(2)), general)
    found = _COMPONENT_SUM.fullmatch(expression)
    if found is not None:
        return ComponentSum(int(found.group(1)), general)
    return general


def compile_rule(key: str, expression: str, base: str) -> Rule | None:
    """The evaluator for one invariant: hand-compiled for hot core keys and the score
    profiles' constraints, else the FHIRPath compiler, else fhirpathpy. None when the
    expression cannot be evaluated at all."""
    if key in NOT_EVALUATED:
        return None
    if key in HAND_COMPILED:
        return HAND_COMPILED[key]
    cache_key = (expression, base)
    if cache_key not in _compiled:
        general: Rule
        try:
            general = CompiledRule(compile_fhirpath(expression), expression, base)
        except Unsupported:
            try:
                general = FHIRPathRule(expression, base)
            except Exception:  # noqa: BLE001 - unparsable expressions are skipped, not fatal
                return None
        except Exception:  # noqa: BLE001 - unparsable expressions are skipped, not fatal
            return None
        _compiled[cache_key] = _fast_form(expression, general)
    return _compiled[cache_key]
