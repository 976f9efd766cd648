"""Column cells: a column path's result made one value (or a list, for a collection column),
checked against the column's type; and the error a path raises on data it does not fit.

https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#column-types
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.validation.definitions import SD_BASE
from fhir_bridge.validation.fhirpath import Env, Fn, Unsupported
from fhir_bridge.views.paths import value_test

Cell = Callable[[list[Any], Env], Any]
# Errors a path can raise on data it does not fit (a singleton expected, strings compared
# with numbers): the view is at fault for this data, so they come out as InvalidRequestError.
PATH_ERRORS = (Unsupported, TypeError, ValueError, ArithmeticError)
# The JSON types a cell of each FHIR type takes without a closer look.
_STRINGS = frozenset(
    "base64Binary canonical code date dateTime id instant markdown oid string time uri url uuid"
    " xhtml".split()
)
_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt"})


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a select: `cell` evaluates its path at a focus."""

    name: str
    path: str
    location: str
    collection: bool
    type: str | None
    cell: Cell

    @property
    def scalar(self) -> bool:
        """Whether every value is null, a str, an int or a float: never a bool, list or object
        (so a writer may take the values as they are)."""
        plain = _plain_types(self.type)
        return not self.collection and bool(plain) and bool not in plain


def failed(location: str, reason: str) -> InvalidRequestError:
    return InvalidRequestError(f"{location}: {reason}", expression=location)


def accepts(type_name: str | None) -> Callable[[Any], bool]:
    """The test of a column's values: of its type, or primitive when the type is unset (the
    spec asks for an error when a complex value comes out of a column without a type).
    Raises PathError for a type name that is no FHIR type."""
    if type_name is None:
        return lambda value: not isinstance(value, (dict, list))
    name = type_name.removeprefix(SD_BASE)
    if not name[:1].isalpha() or any(c in name for c in ".:/#"):
        # A backbone element (Observation.referenceRange) or a structure we do not know.
        return lambda value: isinstance(value, dict)
    return value_test(name)


def _plain_types(type_name: str | None) -> frozenset[type]:
    name = (type_name or "").removeprefix(SD_BASE)
    if type_name is None:
        return frozenset({str, int, float, bool})
    if name in _STRINGS:
        return frozenset({str})
    if name in _INTEGERS:
        return frozenset({int})
    if name == "decimal":
        return frozenset({int, float})
    if name == "boolean":
        return frozenset({bool})
    return frozenset()


def compile_cell(
    name: str, location: str, evaluate: Fn, collection: bool, type_name: str | None
) -> Cell:
    """The cell of a column: null for nothing, the value for one, an error for more unless
    the column is a collection (then always a list); each value checked against the type."""
    test = accepts(type_name)
    # `type(value) in plain` settles the usual values without a call to `test`.
    plain = _plain_types(type_name)

    def mistyped(value: Any) -> InvalidRequestError:
        kind = "an object" if isinstance(value, dict) else type(value).__name__
        if type_name is None:
            return failed(location, f"column {name} yields {kind}: a complex value needs a type")
        return failed(location, f"column {name} is of type {type_name} but yields {kind}")

    def cell(focus: list[Any], env: Env) -> Any:
        try:
            values = evaluate(focus, env)
        except PATH_ERRORS as error:
            raise failed(location, str(error)) from error
        if len(values) == 1:
            value = values[0]
            if type(value) in plain or test(value):
                return value
            raise mistyped(value)
        if not values:
            return None
        raise failed(location, f"column {name} yields {len(values)} values, not a collection")

    def collection_cell(focus: list[Any], env: Env) -> Any:
        try:
            values = evaluate(focus, env)
        except PATH_ERRORS as error:
            raise failed(location, str(error)) from error
        for value in values:
            if type(value) not in plain and not test(value):
                raise mistyped(value)
        return values

    return collection_cell if collection else cell
