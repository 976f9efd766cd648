"""Search index extraction: the rows a resource contributes to each of its search parameters.

Each parameter's FHIRPath expression is compiled once per resource type into concrete JSON key
paths (choice types expanded, `as` resolved at compile time, `where` filters kept), so the write
path walks plain dicts; expressions outside that subset fall back to fhirpathpy.
https://hl7.org/fhir/R4/search.html#ptypes
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from fhir_bridge.domain.fhir_json import number_text
from fhir_bridge.domain.search_parameters import (
    COMBINED,
    SearchParameter,
    Step,
    element_types,
    narrowed,
    parse_expression,
    search_parameters,
)
from fhir_bridge.domain.search_values import (
    MAX_TIME,
    MIN_TIME,
    date_range,
    normalize_string,
    number_range,
)
from fhir_bridge.store.index_rows import (
    DateRow,
    IndexRows,
    NumberRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    URIRow,
)

# Ops of a compiled path: ("key", json_key) | ("ref_is", type) | ("eq", field, literal)
Op = tuple[str, ...]
STRUCTURAL = ("BackboneElement", "Element")
EXACT_SUFFIX = ":exact"  # string rows as written, for the :exact modifier
IDENTIFIER_SUFFIX = ":identifier"  # Reference.identifier tokens, for the :identifier modifier
HUMAN_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
LAST_UPDATED = "_lastUpdated"
# Token rows of CodeableConcepts already seen (trial data repeats its codes), by the only values
# the rows are made of: parameter, text, and system, code and display of each coding.
_CONCEPT_ROWS: dict[tuple[str | None, ...], list[TokenRow]] = {}
CONCEPTS_REMEMBERED = 4096
QUANTITY_TYPES = frozenset({"Quantity", "Duration", "Age", "Distance", "Count", "SimpleQuantity"})


@dataclass(frozen=True, slots=True)
class CompiledPath:
    """One concrete way to reach values: JSON keys and filters, and the FHIR type at the end."""

    ops: tuple[Op, ...]
    fhir_type: str


@dataclass(frozen=True, slots=True)
class CompiledParameter:
    code: str
    type: str
    paths: tuple[CompiledPath, ...]
    fallback: Callable[[dict[str, Any]], list[Any]] | None = None
    # a narrowed reference parameter: the target type whose rows its base parameter holds
    covered_type: str | None = None


def _capital(name: str) -> str:
    return name[0].upper() + name[1:]


def compile_branch(steps: tuple[Step, ...]) -> list[CompiledPath] | None:
    """Expand a parsed branch into concrete paths; None if an element is not in the table."""
    # Each partial path: (ops, element context for the next field, FHIR type so far)
    partial: list[tuple[tuple[Op, ...], str | None, str]] = [((), steps[0].name, steps[0].name)]
    for step in steps[1:]:
        following: list[tuple[tuple[Op, ...], str | None, str]] = []
        for ops, context, fhir_type in partial:
            if step.kind == "as":
                if fhir_type.lower() == step.name.lower():
                    following.append((ops, context, fhir_type))
            elif step.kind == "where_resolve":
                following.append(((*ops, ("ref_is", step.name)), context, fhir_type))
            elif step.kind == "where_equals":
                following.append(((*ops, ("eq", step.name, step.value or "")), context, fhir_type))
            else:
                if context is None:
                    return None
                found = element_types(f"{context}.{step.name}")
                if found is None:
                    return None
                types, choice = found
                for type_name in types:
                    key = step.name + _capital(type_name) if choice else step.name
                    if type_name.startswith("@"):  # contentReference: content of another path
                        following.append(((*ops, ("key", key)), type_name[1:], "BackboneElement"))
                        continue
                    if type_name in STRUCTURAL:
                        nxt: str | None = f"{context}.{step.name}"
                    else:
                        nxt = type_name if type_name[0].isupper() else None
                    following.append(((*ops, ("key", key)), nxt, type_name))
        partial = following
    return [CompiledPath(ops, fhir_type) for ops, _, fhir_type in partial]


def compile_parameter(resource_type: str, definition: SearchParameter) -> CompiledParameter | None:
    """Compile one definition for `resource_type`; None for types not indexed (composite)."""
    if definition.type in ("composite", "special") or not definition.expression:
        return None
    branches = parse_expression(definition.expression)
    paths: list[CompiledPath] = []
    for branch in branches or ():
        compiled = compile_branch(branch)
        if compiled is None:
            branches = None
            break
        root = branch[0].name
        if root not in (resource_type, "Resource"):
            continue
        paths.extend(compiled)
    if branches is None:
        return CompiledParameter(definition.code, definition.type, (), _fhirpath(definition))
    return CompiledParameter(definition.code, definition.type, tuple(paths))


def _fhirpath(definition: SearchParameter) -> Callable[[dict[str, Any]], list[Any]]:
    import fhirpathpy
    from fhirpathpy.models import models

    # The R4 model lets fhirpathpy resolve choice elements (deceased -> deceasedDateTime).
    compiled = fhirpathpy.compile(definition.expression, models["r4"])

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        return list(compiled(resource, None))

    return evaluate


@cache
def compiled_parameters(resource_type: str) -> tuple[CompiledParameter, ...]:
    """The compiled, indexable parameters of a resource type (cached per process)."""
    compiled = []
    for code, definition in search_parameters(resource_type).items():
        if (resource_type, code) in COMBINED:
            continue  # answered from its parts' rows
        parameter = compile_parameter(resource_type, definition)
        narrowing = narrowed(resource_type, code)
        if parameter is not None and narrowing is not None:
            parameter = replace(parameter, covered_type=narrowing[1])
        if parameter is not None and (parameter.paths or parameter.fallback):
            compiled.append(parameter)
    return tuple(compiled)


def _walk(resource: dict[str, Any], ops: tuple[Op, ...]) -> list[Any]:
    values: list[Any] = [resource]
    for op in ops:
        kind = op[0]
        if kind == "key":
            key = op[1]
            found: list[Any] = []
            for value in values:
                item = value.get(key) if isinstance(value, dict) else None
                if item is None:
                    continue
                if isinstance(item, list):
                    found.extend(item)
                else:
                    found.append(item)
            values = found
        elif kind == "ref_is":
            values = [v for v in values if _reference_type(v) == op[1]]
        else:
            values = [v for v in values if isinstance(v, dict) and v.get(op[1]) == op[2]]
        if not values:
            return values
    return values


def _reference_type(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    reference = value.get("reference")
    if isinstance(reference, str) and "/" in reference:
        parts = reference.split("/")
        if "_history" in parts and parts.index("_history") >= 2:
            return parts[parts.index("_history") - 2]
        return parts[-2] if len(parts) >= 2 else None
    declared = value.get("type")
    return declared if isinstance(declared, str) else None


def extract_index(resource: dict[str, Any]) -> IndexRows:
    """Index rows of every supported search parameter of `resource` (by its resourceType).

    https://hl7.org/fhir/R4/search.html — `_id` is not indexed: resources.id serves it, and
    `_lastUpdated` is the store's to add (last_updated_row) when it assigns the time, so the
    rest can be extracted before the write lock.
    """
    rows = IndexRows()
    by_key, others = _paths_by_first_key(resource["resourceType"])
    for parameter, path in others:
        if path is not None:
            _add_values(rows, parameter, path, resource)
        elif parameter.fallback is not None:
            for value, fhir_type in _guess_typed(parameter.fallback(resource)):
                _add(rows, parameter, value, fhir_type)
    # most parameters' elements are absent: only the paths of the elements present are walked
    for key in resource:
        for parameter, path in by_key.get(key, ()):
            _add_values(rows, parameter, path, resource)
    return rows


def _add_values(
    rows: IndexRows, parameter: CompiledParameter, path: CompiledPath, resource: dict[str, Any]
) -> None:
    for value in _walk(resource, path.ops):
        _add(rows, parameter, value, path.fhir_type)


@cache
def _paths_by_first_key(
    resource_type: str,
) -> tuple[
    dict[str, list[tuple[CompiledParameter, CompiledPath]]],
    list[tuple[CompiledParameter, CompiledPath | None]],
]:
    """The compiled paths of a resource type by the element they start at, and the others:
    paths that start elsewhere, and parameters evaluated by fhirpathpy (path None)."""
    by_key: dict[str, list[tuple[CompiledParameter, CompiledPath]]] = {}
    others: list[tuple[CompiledParameter, CompiledPath | None]] = []
    for parameter in compiled_parameters(resource_type):
        if parameter.code == LAST_UPDATED:
            continue
        if parameter.fallback is not None:
            others.append((parameter, None))
        for path in parameter.paths:
            if path.ops and path.ops[0][0] == "key":
                by_key.setdefault(path.ops[0][1], []).append((parameter, path))
            else:
                others.append((parameter, path))
    return by_key, others


def last_updated_row(instant: str) -> DateRow:
    """The `_lastUpdated` row of a version written at `instant` (meta.lastUpdated)."""
    low, high = date_range(instant)
    return DateRow(LAST_UPDATED, low, high)


def _guess_typed(values: list[Any]) -> list[tuple[Any, str]]:
    typed: list[tuple[Any, str]] = []
    for value in values:
        if isinstance(value, bool):
            typed.append((value, "boolean"))
        elif isinstance(value, str):
            typed.append((value, "string"))
        elif isinstance(value, (int, float)):
            typed.append((value, "decimal"))
    return typed


def _add(rows: IndexRows, parameter: CompiledParameter, value: Any, fhir_type: str) -> None:
    kind, code = parameter.type, parameter.code
    if kind == "token":
        _add_token(rows, code, value, fhir_type)
    elif kind == "reference":
        _add_reference(rows, code, value, fhir_type, parameter.covered_type)
    elif kind == "date":
        _add_date(rows, code, value, fhir_type)
    elif kind in ("number", "quantity"):
        _add_number(rows, code, value, fhir_type)
    elif kind == "string":
        _add_string(rows, code, value, fhir_type)
    elif kind == "uri":
        _add_uri(rows, code, value, fhir_type)


def _add_token(rows: IndexRows, param: str, value: Any, fhir_type: str) -> None:
    out = rows.tokens
    if isinstance(value, bool):
        out.append(TokenRow(param, None, "true" if value else "false"))
    elif isinstance(value, str):
        out.append(TokenRow(param, None, value))
    elif not isinstance(value, dict):
        return
    elif fhir_type == "CodeableConcept":
        key = _concept_key(param, value)
        known = _CONCEPT_ROWS.get(key) if key is not None else None
        if known is not None:
            out.extend(known)
            return
        first = len(out)
        for coding in value.get("coding") or ():
            _add_coding(out, param, coding)
        if value.get("text"):
            # :text matches a row's text column whatever its code: the concept's text rides on
            # the first coding row without a display, or gets a row of its own.
            concept_text = normalize_string(value["text"])
            free = next((n for n in range(first, len(out)) if out[n].text is None), None)
            if free is None:
                out.append(TokenRow(param, None, None, concept_text))
            else:
                out[free] = TokenRow(param, out[free].system, out[free].code, concept_text)
        if key is not None and len(_CONCEPT_ROWS) < CONCEPTS_REMEMBERED:
            _CONCEPT_ROWS[key] = out[first:]
    elif fhir_type == "Coding":
        _add_coding(out, param, value)
    elif fhir_type == "Identifier":
        type_text = (value.get("type") or {}).get("text")
        text = normalize_string(type_text) if type_text else None
        if value.get("value") is not None or value.get("system"):
            out.append(TokenRow(param, value.get("system"), value.get("value"), text))
    elif fhir_type == "ContactPoint":
        if value.get("value") is not None:
            out.append(TokenRow(param, None, value["value"]))


def _concept_key(param: str, concept: dict[str, Any]) -> tuple[str | None, ...] | None:
    """The key of a concept's rows in _CONCEPT_ROWS; None when a part is not a string."""
    text, codings = concept.get("text"), concept.get("coding")
    if type(codings) is list and len(codings) == 1 and type(codings[0]) is dict:
        # the common shape, one coding: its key without building it up part by part
        coding: dict[str, Any] = codings[0]
        system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
        if (
            (text is None or type(text) is str)
            and (system is None or type(system) is str)
            and (code is None or type(code) is str)
            and (display is None or type(display) is str)
        ):
            return (param, text, system, code, display)
        return None
    key: tuple[Any, ...] = (param, text)
    for coding in codings if isinstance(codings, list) else ():
        if not isinstance(coding, dict):  # narrowed: the dict's own get, not a method call
            return None
        key = (*key, coding.get("system"), coding.get("code"), coding.get("display"))
    for part in key:
        if part is not None and type(part) is not str:
            return None
    return key


def _add_coding(out: list[TokenRow], param: str, coding: dict[str, Any]) -> None:
    display = coding.get("display")
    text = normalize_string(display) if display else None
    if coding.get("code") is not None or coding.get("system"):
        out.append(TokenRow(param, coding.get("system"), coding.get("code"), text))


def _add_string(rows: IndexRows, param: str, value: Any, fhir_type: str) -> None:
    if isinstance(value, str):
        parts: list[str] = [value]
    elif isinstance(value, dict) and fhir_type in ("HumanName", "Address"):
        names = HUMAN_NAME_PARTS if fhir_type == "HumanName" else ADDRESS_PARTS
        parts = []
        for name in names:
            part = value.get(name)
            if isinstance(part, list):
                parts.extend(p for p in part if isinstance(p, str))
            elif isinstance(part, str):
                parts.append(part)
    else:
        return
    for part in parts:
        rows.strings.append(StringRow(param, normalize_string(part)))
        rows.strings.append(StringRow(param + EXACT_SUFFIX, part))


def _add_date(rows: IndexRows, param: str, value: Any, fhir_type: str) -> None:
    try:
        if isinstance(value, str):
            low, high = date_range(value)
            rows.dates.append(DateRow(param, low, high))
        elif isinstance(value, dict) and fhir_type == "Period":
            if value.get("start") or value.get("end"):
                low = date_range(value["start"])[0] if value.get("start") else MIN_TIME
                high = date_range(value["end"])[1] if value.get("end") else MAX_TIME
                rows.dates.append(DateRow(param, low, high))
        elif isinstance(value, dict) and fhir_type == "Timing":
            for event in value.get("event") or ():
                _add_date(rows, param, event, "dateTime")
            bounds = (value.get("repeat") or {}).get("boundsPeriod")
            if bounds:
                _add_date(rows, param, bounds, "Period")
    except ValueError:
        return  # an invalid date is the validator's finding, not an index row


def _add_number(rows: IndexRows, param: str, value: Any, fhir_type: str) -> None:
    if isinstance(value, dict) and fhir_type in QUANTITY_TYPES:
        number = value.get("value")
        system, code = value.get("system"), value.get("code") or value.get("unit")
    else:
        number, system, code = value, None, None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return
    exact, low, high = number_range(number_text(number))  # the precision as sent
    rows.numbers.append(NumberRow(param, exact, low, high, system, code))


def _add_reference(
    rows: IndexRows, param: str, value: Any, fhir_type: str, covered_type: str | None = None
) -> None:
    if isinstance(value, str):  # canonical or uri
        unversioned, _, version = value.partition("|")
        rows.references.append(ReferenceRow(param, None, None, unversioned))
        if version:
            rows.references.append(ReferenceRow(param, None, None, value))
        return
    if not isinstance(value, dict):
        return
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value") is not None:
        rows.tokens.append(
            TokenRow(param + IDENTIFIER_SUFFIX, identifier.get("system"), identifier["value"])
        )
    reference = value.get("reference")
    if not isinstance(reference, str) or reference.startswith("#"):
        return
    target_type, target_id, url = parse_reference(reference)
    if target_type is None or target_type != covered_type:
        rows.references.append(ReferenceRow(param, target_type, target_id, url))


def parse_reference(reference: str) -> tuple[str | None, str | None, str | None]:
    """(type, id, absolute url or None) of a literal reference; versions are dropped. An
    absolute URL names no local type and id: `http://other.example/fhir/Patient/p1` is
    another server's record, not this one's Patient/p1 (search by the URL finds it)."""
    if "://" in reference or reference.startswith("urn:"):
        return None, None, reference
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1], None
    return None, None, reference


def _add_uri(rows: IndexRows, param: str, value: Any, fhir_type: str) -> None:
    if isinstance(value, str):
        rows.uris.append(URIRow(param, value))
