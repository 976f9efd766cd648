"""FHIR search requests: query parameters parsed into a plain SearchRequest.

https://hl7.org/fhir/R4/search.html — repeated names are AND, commas inside a value are OR.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl

from fhir_bridge.domain.cost import Limits
from fhir_bridge.domain.fhir import SUPPORTED_TYPES, parse_uint
from fhir_bridge.domain.search_parameters import SearchParameter, search_parameter
from fhir_bridge.domain.search_values import (
    date_range,
    normalize_string,
    number_range,
)
from fhir_bridge.errors import InvalidRequestError

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Handled by the API layer (format, pretty printing); accepted here, never "unknown".
PASSTHROUGH = frozenset({"_format", "_pretty"})
SUMMARY_VALUES = ("true", "text", "data", "count", "false")
TOTAL_VALUES = ("none", "estimate", "accurate")
MAX_OFFSET = 10**9
# Bounds on one search, so that no request can tie up the database (every criterion is a
# subquery; OR values and chain levels multiply): beyond them a 400 too-costly.
MAX_CRITERIA = 30
MAX_VALUES = 200  # in one criterion
MAX_ALL_VALUES = 1000  # in all criteria together
MAX_DEPTH = 3  # chain links plus _has levels in one parameter name
MAX_SORT_KEYS = 8
MAX_URI_LEVELS = 32  # `/` in a uri:above value: each parent path is an argument
ID_PARAMETER = SearchParameter("Resource", "_id", "token", "Resource.id")
SORTABLE = frozenset({"date", "string", "token", "number", "quantity", "uri"})
MODIFIERS = {
    "token": frozenset({"not", "text"}),
    "string": frozenset({"exact", "contains"}),
    "uri": frozenset({"below", "above"}),
    "reference": frozenset({"identifier"}),  # plus a target type name
    "date": frozenset(),
    "number": frozenset(),
    "quantity": frozenset(),
}


@dataclass(frozen=True, slots=True)
class SearchValue:
    """One alternative of a parameter value; which fields are set depends on the type."""

    raw: str
    prefix: str = "eq"
    system: str | None = None  # token/quantity system; "" = must have none; None = any
    code: str | None = None  # token code, quantity code or unit
    text: str | None = None  # normalised string (string, token :text)
    low: float | None = None  # date range, or number implicit range
    high: float | None = None
    number: float | None = None
    target_type: str | None = None  # reference
    target_id: str | None = None
    url: str | None = None  # absolute or canonical reference
    version: str | None = None  # canonical `url|version`


@dataclass(frozen=True, slots=True)
class ParamCriterion:
    """`name[:modifier]=v1,v2` on `resource_type`: a match for any of the values."""

    resource_type: str
    name: str
    type: str
    modifier: str | None
    values: tuple[SearchValue, ...]
    missing: bool | None = None  # set for :missing


@dataclass(frozen=True, slots=True)
class ChainCriterion:
    """`name[:Type].rest=v`: the reference `name` points to a resource matching `inner`."""

    resource_type: str
    name: str
    targets: tuple[tuple[str, Criterion], ...]  # (target type, criterion on that type)


@dataclass(frozen=True, slots=True)
class HasCriterion:
    """`_has:Source:param:rest=v`: some Source whose `param` points here matches `inner`."""

    resource_type: str
    source_type: str
    source_param: str
    inner: Criterion


Criterion = ParamCriterion | ChainCriterion | HasCriterion


@dataclass(frozen=True, slots=True)
class Include:
    """`_include=Source:param[:Target]` or `_revinclude=...`; `iterate` for `:iterate`."""

    source_type: str
    param: str | None  # None for `*`
    target_type: str | None = None
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str
    type: str
    descending: bool = False


@dataclass(slots=True)
class SearchRequest:
    """A parsed type-level search; `unknown` holds parameters this server does not support."""

    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int | None = None
    offset: int = 0
    cursor: str | None = None
    summary: str | None = None
    total: str | None = None
    elements: list[str] = field(default_factory=list)
    unknown: list[tuple[str, str]] = field(default_factory=list)


def split_escaped(text: str, separator: str, limit: int = -1) -> list[str]:
    """Split on `separator` not preceded by a backslash; the parts keep their escapes
    (`unescape` undoes them)."""
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == separator and (limit < 0 or len(parts) < limit):
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", text)


def parse_query_string(query: str) -> list[tuple[str, str]]:
    """`a=1&b=2` (percent-decoded) as name/value pairs, order kept."""
    return parse_qsl(query.lstrip("?"), keep_blank_values=True)


def _invalid(message: str, name: str) -> InvalidRequestError:
    return InvalidRequestError(message, expression=name, code="invalid")


def _too_costly(message: str, name: str) -> InvalidRequestError:
    return InvalidRequestError(message, code="too-costly", expression=name)


def _not_supported(message: str, name: str) -> InvalidRequestError:
    return InvalidRequestError(message, expression=name, code="not-supported")


def _definition(resource_type: str, code: str) -> SearchParameter | None:
    if code == "_id":
        return ID_PARAMETER
    return search_parameter(resource_type, code)


def _targets(definition: SearchParameter) -> tuple[str, ...]:
    if "*" in definition.targets:
        return SUPPORTED_TYPES
    return tuple(t for t in definition.targets if t in SUPPORTED_TYPES)


def parse_search(
    resource_type: str,
    params: Sequence[tuple[str, str]],
    base: str = "",
    max_criteria: int = Limits.max_search_criteria,
) -> SearchRequest:
    """Parse type-level search parameters into a SearchRequest.

    https://hl7.org/fhir/R4/search.html — unknown parameters land in `request.unknown`;
    malformed values raise InvalidRequestError naming the parameter in `expression`; empty
    ones are ignored ("not an error"). A reference value under `base`, this server's base URL,
    is a local reference (`{base}/Patient/1` is `Patient/1`). More than `max_criteria`
    criteria once chains and _has are expanded (fan_out) is a 400 too-costly.
    """
    request = SearchRequest(resource_type)
    values = 0
    expanded = 0
    for name, value in params:
        if name in PASSTHROUGH or value == "":
            continue
        if name.startswith("_") and _result_parameter(request, name, value):
            continue
        if "\x00" in name or "\x00" in value:
            raise _invalid("Search parameters must not contain the NUL character", name)
        if name.count(".") + name.count("_has:") > MAX_DEPTH:
            raise _too_costly(f"'{name}' nests more than {MAX_DEPTH} levels", name)
        criterion = parse_criterion(resource_type, name, value, base)
        if criterion is None:
            request.unknown.append((name, value))
        else:
            request.criteria.append(criterion)
            values += value.count(",") + 1
            expanded += fan_out(criterion)
            if expanded > max_criteria:
                raise _too_costly(
                    f"The search expands to more than {max_criteria} criteria "
                    "(each chain target and _has counts)",
                    name,
                )
            if len(request.criteria) > MAX_CRITERIA:
                raise _too_costly(f"More than {MAX_CRITERIA} search criteria", name)
            if values > MAX_ALL_VALUES:
                raise _too_costly(f"More than {MAX_ALL_VALUES} values in all criteria", name)
    return request


def _result_parameter(request: SearchRequest, name: str, value: str) -> bool:
    """Apply a result parameter (_count, _sort...); False when `name` is not one."""
    base, _, modifier = name.partition(":")
    if base == "_count" or base == "_offset":
        number = parse_uint(value, MAX_OFFSET)
        if number is None:
            raise _invalid(f"{base} must be an integer from 0 to {MAX_OFFSET}", name)
        if base == "_count":
            request.count = number
        else:
            request.offset = number
    elif base == "_cursor":
        request.cursor = value
    elif base == "_summary":
        if value not in SUMMARY_VALUES:
            raise _invalid(f"_summary must be one of {', '.join(SUMMARY_VALUES)}", name)
        request.summary = value
    elif base == "_total":
        if value not in TOTAL_VALUES:
            raise _invalid(f"_total must be one of {', '.join(TOTAL_VALUES)}", name)
        request.total = value
    elif base == "_elements":
        request.elements.extend(v.strip() for v in value.split(",") if v.strip())
    elif base == "_sort":
        request.sort.extend(_sort_keys(request.resource_type, value, name))
        if len(request.sort) > MAX_SORT_KEYS:
            raise _too_costly(f"More than {MAX_SORT_KEYS} sort keys", name)
    elif base in ("_include", "_revinclude"):
        if modifier not in ("", "iterate", "recurse"):
            raise _not_supported(f"Unsupported modifier on {base}", name)
        include = _include(value, modifier != "", name, reverse=base == "_revinclude")
        (request.includes if base == "_include" else request.revincludes).append(include)
    else:
        return False
    return True


def _sort_keys(resource_type: str, value: str, name: str) -> list[SortKey]:
    keys = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        descending = item.startswith("-")
        code = item.lstrip("-")
        if code in ("_id", "_lastUpdated"):
            keys.append(SortKey(code, "special", descending))
            continue
        definition = search_parameter(resource_type, code)
        if definition is None or definition.type not in SORTABLE:
            raise _not_supported(f"Cannot sort {resource_type} by '{code}'", name)
        keys.append(SortKey(code, definition.type, descending))
    return keys


def _include(value: str, iterate: bool, name: str, reverse: bool) -> Include:
    if value == "*":
        return Include("*", None, None, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] not in SUPPORTED_TYPES:
        raise _invalid(f"{name} must be Type:parameter[:targetType]", name)
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if param != "*":
        definition = search_parameter(source, param)
        if definition is None or definition.type != "reference":
            raise _invalid(f"'{param}' is not a reference parameter of {source}", name)
    if target is not None and target not in SUPPORTED_TYPES:
        raise _invalid(f"Unknown target type '{target}'", name)
    return Include(source, None if param == "*" else param, target, iterate)


def fan_out(criterion: Criterion) -> int:
    """The subqueries the criterion's SQL holds: a chain has one per target type (a reference
    to any type has over a hundred), a _has one for its source, each with its inner ones."""
    found: dict[int, int] = {}  # by id(): parse_criterion shares equal inner criteria

    def count(c: Criterion) -> int:
        known = found.get(id(c))
        if known is None:
            if isinstance(c, ChainCriterion):
                known = sum(1 + count(inner) for _, inner in c.targets)
            elif isinstance(c, HasCriterion):
                known = 1 + count(c.inner)
            else:
                known = 1
            found[id(c)] = known
        return known

    return count(criterion)


# Remembered: the inner criteria of a chain over every target type repeat per type, so that a
# criterion's tree is a graph of a few hundred shared nodes, not one of millions of copies.
@lru_cache(maxsize=4096)
def parse_criterion(resource_type: str, name: str, value: str, base: str = "") -> Criterion | None:
    """One `name=value` filter on `resource_type`; None if the parameter is unknown. `base`:
    as parse_search."""
    if name.startswith("_has:"):
        return _has(resource_type, name, value, base)
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    definition = _definition(resource_type, code)
    if definition is None or definition.type in ("composite", "special"):
        return None
    if dot:
        return _chain(resource_type, definition, modifier, rest, value, name, base)
    return _param(resource_type, definition, modifier or None, value, name, base)


def _has(resource_type: str, name: str, value: str, base: str) -> Criterion | None:
    parts = name.split(":", 3)
    if len(parts) < 4 or not parts[3]:
        raise _invalid("_has must be _has:Type:reference:parameter", name)
    _, source_type, source_param, rest = parts
    if source_type not in SUPPORTED_TYPES:
        return None
    definition = search_parameter(source_type, source_param)
    if definition is None or definition.type != "reference":
        return None
    if resource_type not in _targets(definition):
        raise _invalid(f"{source_type}.{source_param} cannot refer to {resource_type}", name)
    inner = parse_criterion(source_type, rest, value, base)
    if inner is None:
        return None
    return HasCriterion(resource_type, source_type, source_param, inner)


def _chain(
    resource_type: str,
    definition: SearchParameter,
    modifier: str,
    rest: str,
    value: str,
    name: str,
    base: str,
) -> Criterion | None:
    if definition.type != "reference":
        raise _invalid(f"Only reference parameters can be chained, not '{definition.code}'", name)
    candidates = _targets(definition)
    if modifier:
        if modifier not in candidates:
            raise _invalid(f"'{modifier}' is not a target of {definition.code}", name)
        candidates = (modifier,)
    first = rest.split(".", 1)[0].split(":", 1)[0]
    targets = []
    for target in candidates:
        if first.startswith("_has") or _definition(target, first) is not None:
            inner = parse_criterion(target, rest, value, base)
            if inner is not None:
                targets.append((target, inner))
    if not targets:
        return None
    return ChainCriterion(resource_type, definition.code, tuple(targets))


def _param(
    resource_type: str,
    definition: SearchParameter,
    modifier: str | None,
    value: str,
    name: str,
    base: str,
) -> ParamCriterion:
    kind = definition.type
    if modifier == "missing":
        if value not in ("true", "false"):
            raise _invalid(":missing takes true or false", name)
        return ParamCriterion(resource_type, definition.code, kind, modifier, (), value == "true")
    if modifier is not None:
        allowed = MODIFIERS.get(kind, frozenset()) if definition.code != "_id" else frozenset()
        is_type = kind == "reference" and modifier in _targets(definition)
        if modifier not in allowed and not is_type:
            raise _not_supported(f"Modifier ':{modifier}' is not supported on '{name}'", name)
    if kind == "reference" and modifier == "identifier":
        # Reference.identifier is indexed as a token under "<code>:identifier".
        definition = SearchParameter(resource_type, definition.code + ":identifier", "token", "")
        kind, modifier = "token", None
    parts = split_escaped(value, ",")
    if len(parts) > MAX_VALUES:
        raise _too_costly(f"'{name}' has more than {MAX_VALUES} values", name)
    values = tuple(  # token and quantity values are split on `|` before their escapes go
        _value(
            definition,
            modifier,
            part if kind in ("token", "quantity") else unescape(part),
            name,
            base,
        )
        for part in parts
    )
    return ParamCriterion(resource_type, definition.code, kind, modifier, values)


def _prefixed(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[2].isalpha():
        return text[:2], text[2:]
    return "eq", text


def _value(
    definition: SearchParameter, modifier: str | None, raw: str, name: str, base: str
) -> SearchValue:
    kind = definition.type
    if kind == "token":
        if modifier == "text":
            return SearchValue(raw, text=normalize_string(unescape(raw)))
        if definition.code == "_id":
            return SearchValue(raw, code=unescape(raw))
        parts = split_escaped(raw, "|", 1)
        if len(parts) == 1:
            return SearchValue(raw, code=unescape(raw))
        system, code = unescape(parts[0]), unescape(parts[1])
        return SearchValue(raw, system=system, code=code or None)
    if kind == "string":
        return SearchValue(raw, text=normalize_string(raw))
    if kind == "uri":
        if modifier == "above" and raw.count("/") > MAX_URI_LEVELS:
            raise _too_costly(f"'{name}' has more than {MAX_URI_LEVELS} path levels", name)
        return SearchValue(raw, url=raw)
    if kind == "date":
        prefix, text = _prefixed(raw)
        try:
            low, high = date_range(text)
        except ValueError:
            raise _invalid(f"Invalid date '{raw}' for '{name}'", name) from None
        return SearchValue(raw, prefix=prefix, low=low, high=high)
    if kind in ("number", "quantity"):
        prefix, text = _prefixed(raw)
        parts = split_escaped(text, "|", 2) if kind == "quantity" else [text]
        try:
            number, low, high = number_range(parts[0])
        except (ArithmeticError, ValueError):  # InvalidOperation, Overflow
            raise _invalid(f"Invalid number '{raw}' for '{name}'", name) from None
        unit_system = (unescape(parts[1]) or None) if len(parts) > 1 else None
        unit = (unescape(parts[2]) or None) if len(parts) > 2 else None
        return SearchValue(
            raw, prefix=prefix, number=number, low=low, high=high, system=unit_system, code=unit
        )
    return _reference_value(definition, modifier, raw, base)


def _reference_value(
    definition: SearchParameter, modifier: str | None, raw: str, base: str
) -> SearchValue:
    if base and raw.startswith(f"{base}/"):  # this server's: search 3.1.1.4.12
        local = _reference_value(definition, modifier, raw[len(base) + 1 :], "")
        if local.target_type is None:  # `{base}/id`: no URL a reference is stored as
            return local
        # `{base}/Type/id` matches the URL too: a reference may be stored as such
        return SearchValue(raw, url=raw, target_type=local.target_type, target_id=local.target_id)
    if "://" in raw or raw.startswith("urn:"):
        url, _, version = raw.partition("|")
        return SearchValue(raw, url=url, version=version or None)
    parts = raw.split("/")
    if len(parts) >= 2 and parts[-2] and parts[-2][0].isupper():
        return SearchValue(raw, target_type=parts[-2], target_id=parts[-1])
    if "_history" in parts[2:]:  # Type/id/_history/vid
        index = parts.index("_history", 2)
        return SearchValue(raw, target_type=parts[index - 2], target_id=parts[index - 1])
    targets = _targets(definition)
    target_type = modifier or (targets[0] if len(targets) == 1 else None)
    return SearchValue(raw, target_type=target_type, target_id=raw)
