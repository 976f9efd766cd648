"""The FHIRPath of ViewDefinition paths: the compiler's dialect with the view's constants,
%rowIndex, getResourceKey(), getReferenceKey(), join(), extension(), the boundaries, and
ofType() that picks a choice element by its type (`value.ofType(Quantity)` -> valueQuantity).

https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#fhirpath-functionality
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.parser import parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_bridge.validation.definitions import PRIMITIVE_TYPES, load_definitions, resource_types
from fhir_bridge.validation.fhirpath import (
    Dialect,
    Env,
    Fn,
    FunctionFactory,
    NodeCompiler,
    Unsupported,
    compile_expression,
    compile_node,
    compile_standard,
    member_values,
    singleton,
)
from fhir_bridge.views.boundaries import boundary_function
from fhir_bridge.views.keys import reference_keys, resource_keys

ROW_INDEX = "rowIndex"
_BUILT_IN = frozenset({ROW_INDEX, "resource", "rootResource", "context", "ucum"})
_STRING_TYPES = PRIMITIVE_TYPES - {"boolean", "integer", "decimal", "positiveInt", "unsignedInt"}
_SYSTEM_TYPES = {
    "Boolean": "boolean",
    "String": "string",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
}


class PathError(Exception):
    """A path the view cannot use: bad syntax, an unknown constant or type."""


def compile_path(expression: str, constants: Mapping[str, Any]) -> Fn:
    """`expression` as a closure over (focus collection, env); env carries `this`, `resource`
    and `rowIndex`. Raises PathError, or Unsupported for FHIRPath outside the compiler."""
    _check_syntax(expression)
    for name in _external_names(parse(expression)):  # type: ignore[no-untyped-call]
        if name not in constants and name not in _BUILT_IN:
            raise PathError(f"unknown constant %{name}")
    nodes: dict[str, NodeCompiler] = {
        "InvocationExpression": _invocation,
        "TypeExpression": _type_expression,
        "ExternalConstantTerm": lambda node: _external(node, constants),
    }
    return compile_expression(expression, Dialect(nodes=nodes, functions=_FUNCTIONS))


def _external_names(node: dict[str, Any]) -> Iterator[str]:
    """The %names a parse tree uses (%name, %`name`, %'name')."""
    if node.get("type") == "ExternalConstant":
        children = node.get("children")
        text = children[0]["terminalNodeText"][0] if children else node["terminalNodeText"][-1]
        yield str(text).strip("`'")
    for child in node.get("children") or ():
        yield from _external_names(child)


class _RaiseOnError(ErrorListener):  # type: ignore[misc]
    def syntaxError(  # ANTLR's callback name
        self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, error: Any
    ) -> None:
        # ANTLR lists every token it would have taken: the first part says enough.
        reason = msg.split(" expecting ")[0]
        raise PathError(f"FHIRPath syntax error at column {column + 1}: {reason}")


def _check_syntax(expression: str) -> None:
    """The compiler's parser recovers from errors; a view path must parse whole, or fail."""
    lexer = FHIRPathLexer(InputStream(expression))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(_RaiseOnError())
    try:
        parser.entireExpression()  # type: ignore[no-untyped-call]
    except PathError:
        raise
    except Exception as error:  # noqa: BLE001 - the lexer raises its own recognition errors
        raise PathError(f"FHIRPath syntax error: {error}") from error


def _function_parts(node: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(name, parameter nodes) of a FunctionInvocation."""
    functn = node["children"][0]
    params = functn["children"][1]["children"] if len(functn["children"]) > 1 else []
    return functn["children"][0]["terminalNodeText"][0], params


def _trailing_member(node: dict[str, Any]) -> tuple[dict[str, Any] | None, str] | None:
    """`base.name` as (base node, name); a bare `name` as (None, name); else None."""
    if node.get("type") == "InvocationExpression":
        right = node["children"][1]
        if right["type"] == "MemberInvocation":
            return node["children"][0], right["children"][0]["terminalNodeText"][0].strip("`")
        return None
    if node.get("type") == "TermExpression":
        term = node["children"][0]
        if term["type"] == "InvocationTerm" and term["children"][0]["type"] == "MemberInvocation":
            member = term["children"][0]
            return None, member["children"][0]["terminalNodeText"][0].strip("`")
    return None


def _type_name(params: list[dict[str, Any]]) -> str:
    if len(params) != 1:
        raise PathError("a type specifier expected")
    return str(params[0].get("text", "")).removeprefix("FHIR.")


def _invocation(node: dict[str, Any]) -> Fn:
    right = node["children"][1]
    if right["type"] == "FunctionInvocation":
        name, params = _function_parts(right)
        if name == "ofType":
            member = _trailing_member(node["children"][0])
            if member is not None:
                base = compile_node(member[0]) if member[0] is not None else None
                return _choice(base, member[1], _type_name(params))
        elif name in ("lowBoundary", "highBoundary"):
            left = compile_node(node["children"][0])
            high, type_name = name == "highBoundary", _of_type_named(node["children"][0])
            bound = boundary_function(params, high, type_name)
            return lambda focus, env: bound(left(focus, env), env)
    steps = _steps(node)
    if steps is not None and FIRST in steps:
        return _walk(steps)
    return compile_standard(node)


FIRST = None  # first() among the member steps of a path


def _steps(node: dict[str, Any]) -> list[str | None] | None:
    """`a.b.first().c` as ["a", "b", FIRST, "c"]; None for other expressions."""
    if node.get("type") != "InvocationExpression":
        member = _trailing_member(node)
        return [member[1]] if member is not None and member[0] is None else None
    head = _steps(node["children"][0])
    right = node["children"][1]
    if head is None:
        return None
    if right["type"] == "MemberInvocation":
        return head + [right["children"][0]["terminalNodeText"][0].strip("`")]
    if right["type"] == "FunctionInvocation" and _function_parts(right) == ("first", []):
        return head + [FIRST]
    return None


def _walk(steps: list[str | None]) -> Fn:
    """Member steps and first() in one loop, a member followed by first() stopping at its
    first value: `code.coding.first().code` is the usual column path."""
    plan: list[tuple[str | None, bool]] = []  # (member or FIRST, keep the first value only)
    for n, step in enumerate(steps):
        if step is FIRST and n > 0 and steps[n - 1] is not FIRST:
            continue  # folded into the member before it
        plan.append((step, step is FIRST or (n + 1 < len(steps) and steps[n + 1] is FIRST)))

    def walk(focus: list[Any], env: Env) -> list[Any]:
        current, shared = focus, True  # shared: `current` may be the caller's or the data's
        for name, first in plan:
            if name is None:
                current, shared = current[:1], False
                continue
            if len(current) == 1:  # the usual step, through a singleton
                item = current[0]
                if type(item) is dict and name in item:
                    value = item[name]
                    if type(value) is not list:
                        current, shared = [value], False
                    elif first:
                        current, shared = value[:1], False
                    else:
                        current, shared = value, True
                    continue
            found: list[Any] = []
            for item in current:
                if type(item) is dict and name in item:
                    value = item[name]
                    if type(value) is list:
                        found.extend(value)
                    else:
                        found.append(value)
                else:
                    found.extend(member_values(item, name))
                if first and found:
                    break
            current, shared = (found[:1] if first else found), False
        return list(current) if shared else current

    return walk


def _type_expression(node: dict[str, Any]) -> Fn:
    """`element as T` and `element is T` over a choice element, as ofType() reads them."""
    member = _trailing_member(node["children"][0])
    if member is None:
        return compile_standard(node)
    base = compile_node(member[0]) if member[0] is not None else None
    choice = _choice(base, member[1], _type_name([node["children"][1]]))
    if node["terminalNodeText"][0] == "as":
        return choice
    left = compile_node(node["children"][0])
    return lambda focus, env: [bool(choice(focus, env))] if left(focus, env) else []


def _of_type_named(node: dict[str, Any]) -> str | None:
    """T when `node` is `... .ofType(T)`: the type a boundary is taken in."""
    if node.get("type") == "InvocationExpression":
        right = node["children"][1]
        if right["type"] == "FunctionInvocation":
            name, params = _function_parts(right)
            if name == "ofType" and len(params) == 1:
                return _type_name(params)
    return None


def value_test(type_name: str) -> Callable[[Any], bool]:
    """Whether a JSON value is of FHIR (or System) type `type_name`."""
    name = _SYSTEM_TYPES.get(type_name.removeprefix("System."), type_name)
    if name == "boolean":
        return lambda v: isinstance(v, bool)
    if name in ("integer", "positiveInt", "unsignedInt"):
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if name == "decimal":
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if name == "integer64":
        return lambda v: isinstance(v, (int, str)) and not isinstance(v, bool)
    if name in _STRING_TYPES:
        return lambda v: isinstance(v, str)
    if name in ("Resource", "DomainResource"):
        return lambda v: isinstance(v, dict) and "resourceType" in v
    if name in resource_types():
        return lambda v: isinstance(v, dict) and v.get("resourceType") == name
    if name in load_definitions()["structures"]:
        return lambda v: isinstance(v, dict) and "resourceType" not in v
    raise PathError(f"unknown type {type_name}")


def _choice(base: Fn | None, element: str, type_name: str) -> Fn:
    """`element.ofType(T)`: the choice element's JSON name carries the type (valueQuantity);
    an element that is not a choice keeps the values that are of type T."""
    key = element + type_name[:1].upper() + type_name[1:]
    test = value_test(type_name)

    def of_type(focus: list[Any], env: Env) -> list[Any]:
        out: list[Any] = []
        for item in base(focus, env) if base is not None else focus:
            if type(item) is not dict:
                continue
            if key in item:
                value = item[key]
                if type(value) is list:
                    out.extend(value)
                else:
                    out.append(value)
            elif element in item:
                value = item[element]
                out.extend(v for v in (value if type(value) is list else [value]) if test(v))
        return out

    return of_type


def _of_type(params: list[dict[str, Any]]) -> Fn:
    test = value_test(_type_name(params))
    return lambda focus, env: [v for v in focus if test(v)]


def _external(node: dict[str, Any], constants: Mapping[str, Any]) -> Fn:
    name = node["children"][0]["children"][0]["terminalNodeText"][0].strip("`")
    if name in constants:
        value = [constants[name]]
        return lambda focus, env: value
    if name == ROW_INDEX:
        return lambda focus, env: [env[ROW_INDEX]]
    if name in ("resource", "rootResource", "context", "ucum"):
        return compile_standard(node)
    raise PathError(f"unknown constant %{name}")


def _get_resource_key(params: list[dict[str, Any]]) -> Fn:
    if params:
        raise PathError("getResourceKey() takes no parameter")
    return lambda focus, env: resource_keys(focus)


def _get_reference_key(params: list[dict[str, Any]]) -> Fn:
    wanted = _type_name(params) if params else None
    if wanted is not None and wanted not in resource_types():
        raise PathError(f"getReferenceKey({wanted}): not a resource type")
    return lambda focus, env: reference_keys(focus, wanted)


def _join(params: list[dict[str, Any]]) -> Fn:
    separator = compile_node(params[0]) if params else None

    def join(focus: list[Any], env: Env) -> list[Any]:
        text = singleton(separator(focus, env)) if separator is not None else ""
        if not isinstance(text, str):
            raise Unsupported("join() separator is not a string")
        # An empty collection joins to the empty string (the suite's fhirpath.json expects it).
        return [text.join(_text(v) for v in focus)]

    return join


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise Unsupported("join() of a non-primitive")


def _extension(params: list[dict[str, Any]]) -> Fn:
    if len(params) != 1:
        raise PathError("extension() takes the extension url")
    url = compile_node(params[0])

    def extension(focus: list[Any], env: Env) -> list[Any]:
        wanted = singleton(url(focus, env))
        out = []
        for item in focus:
            if type(item) is dict:
                for ext in item.get("extension") or ():
                    if type(ext) is dict and ext.get("url") == wanted:
                        out.append(ext)
        return out

    return extension


_FUNCTIONS: dict[str, FunctionFactory] = {
    "getResourceKey": _get_resource_key,
    "getReferenceKey": _get_reference_key,
    "ofType": _of_type,
    "join": _join,
    "extension": _extension,
    "lowBoundary": lambda params: boundary_function(params, False, None),
    "highBoundary": lambda params: boundary_function(params, True, None),
}
