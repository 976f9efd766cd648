"""fhirpathpy for the view paths the compiler does not cover (string and date functions and the
like), with the view's constants, %rowIndex and resource keys: rare, and far slower.

https://hl7.org/fhirpath/N1/
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from fhirpathpy import compile as compile_fhirpathpy
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.models import models
from fhirpathpy.parser import parse

from fhir_bridge.validation.fhirpath import Env, Fn, Unsupported
from fhir_bridge.views.keys import reference_keys, resource_keys
from fhir_bridge.views.paths import ROW_INDEX


def compile_fallback(expression: str, constants: Mapping[str, Any]) -> Fn:
    """`expression` evaluated by fhirpathpy on each focus item; Unsupported when it calls a
    function neither knows, and (at run time) for fhirpathpy's errors."""
    table = {
        "getResourceKey": {"fn": resource_keys, "arity": {0: []}},
        "getReferenceKey": {"fn": _reference_keys, "arity": {0: [], 1: ["TypeSpecifier"]}},
    }
    for name in _function_names(parse(expression)):  # type: ignore[no-untyped-call]
        if name not in table and name not in invocation_registry:
            raise Unsupported(f"function {name}")
    evaluate = compile_fhirpathpy(
        expression, model=models["r4"], options={"userInvocationTable": table}
    )

    def fallback(focus: list[Any], env: Env) -> list[Any]:
        variables = {
            **constants,
            ROW_INDEX: env[ROW_INDEX],
            "resource": env["resource"],
            "rootResource": env["resource"],
        }
        out: list[Any] = []
        for item in focus:
            try:
                values = evaluate(item, variables)
            except Exception as error:  # noqa: BLE001 - fhirpathpy raises plain exceptions
                raise Unsupported(str(error)) from error
            out.extend(_plain(value) for value in values)
        return out

    return fallback


def _function_names(node: dict[str, Any]) -> Iterator[str]:
    """Names of the functions a parse tree calls, so an unknown one fails the view at once."""
    if node.get("type") == "Functn":
        yield str(node["children"][0]["terminalNodeText"][0])
    for child in node.get("children") or ():
        yield from _function_names(child)


def _plain(value: Any) -> Any:
    """fhirpathpy's decimals and dates as the JSON values the compiled paths give."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (str, int, float, bool, dict, list)) or value is None:
        return value
    return str(value)


def _reference_keys(inputs: list[Any], kind: Any = None) -> list[Any]:
    return reference_keys(inputs, getattr(kind, "name", None))
