"""ViewDefinition: a view's JSON checked against the SQL on FHIR v2 model and compiled (paths to
closures), each error naming its element, e.g. `ViewDefinition.select[0].column[1].path`.

https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.validation.definitions import resource_types
from fhir_bridge.validation.fhirpath import Fn, Unsupported
from fhir_bridge.views.columns import Cell, Column, accepts, compile_cell
from fhir_bridge.views.fallback import compile_fallback
from fhir_bridge.views.paths import PathError, compile_path, value_test

SQL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
STATUSES = frozenset({"draft", "active", "retired", "unknown"})
# ViewDefinition.constant.value[x]
CONSTANT_TYPES = frozenset(
    "base64Binary boolean canonical code date dateTime decimal id instant integer integer64 oid"
    " string positiveInt time unsignedInt uri url uuid".split()
)
ITERATIONS = ("forEach", "forEachOrNull", "repeat")
_BACKBONE = frozenset({"id", "extension", "modifierExtension"})
_SELECT_KEYS = _BACKBONE | {"column", "select", "unionAll", *ITERATIONS}
_COLUMN_KEYS = _BACKBONE | {"name", "path", "description", "collection", "type", "tag"}
_WHERE_KEYS = _BACKBONE | {"path", "description"}


@dataclass(frozen=True, slots=True)
class Select:
    """A selection structure: its columns, nested selects and unionAll branches, iterated over
    the nodes of forEach, forEachOrNull or repeat (when one is given)."""

    location: str
    columns: tuple[Column, ...]
    cells: tuple[Cell, ...]
    selects: tuple[Select, ...]
    union: tuple[Select, ...]
    iteration: str | None
    paths: tuple[Fn, ...]
    names: tuple[str, ...]
    # forEachOrNull over nothing yields this: every column null, %rowIndex columns 0.
    null_row: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Where:
    location: str
    evaluate: Fn


@dataclass(frozen=True, slots=True)
class ViewDefinition:
    """A checked, compiled ViewDefinition; `columns` are the output's, in order."""

    resource: str
    constants: Mapping[str, Any]
    where: tuple[Where, ...]
    root: Select

    @property
    def columns(self) -> tuple[str, ...]:
        return self.root.names

    @property
    def output_columns(self) -> tuple[Column, ...]:
        """The columns in output order, with their types."""
        return _output(self.root)

    @classmethod
    def parse(cls, view: Any) -> ViewDefinition:
        """Check and compile a ViewDefinition's JSON; InvalidRequestError names the element.
        https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#processing-algorithm
        """
        return _parse(view)


def _invalid(message: str, location: str, code: str = "value") -> InvalidRequestError:
    return InvalidRequestError(f"{location}: {message}", expression=location, code=code)


def _objects(value: Any, location: str, required: bool = False) -> list[dict[str, Any]]:
    if value is None:
        if required:
            raise _invalid("is required", location, "required")
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _invalid("must be an array of objects", location, "structure")
    if required and not value:
        raise _invalid("must not be empty", location, "required")
    return value


def _string(value: Any, location: str, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise _invalid("is required", location, "required")
        return None
    if not isinstance(value, str) or not value:
        raise _invalid("must be a non-empty string", location, "structure")
    return value


def _known(element: dict[str, Any], keys: frozenset[str], location: str) -> None:
    for key in element:
        if key not in keys and not key.startswith("_"):
            raise _invalid("is not an element of ViewDefinition", f"{location}.{key}", "structure")


def _parse(view: Any) -> ViewDefinition:
    if not isinstance(view, dict):
        raise _invalid("must be a JSON object", "ViewDefinition", "structure")
    if view.get("resourceType", "ViewDefinition") != "ViewDefinition":
        raise _invalid("must be ViewDefinition", "ViewDefinition.resourceType", "structure")
    resource = _string(view.get("resource"), "ViewDefinition.resource", required=True)
    if resource not in resource_types():
        raise _invalid(f"{resource} is not an R4 resource type", "ViewDefinition.resource")
    status = view.get("status")
    if status is not None and status not in STATUSES:
        raise _invalid(f"must be one of {', '.join(sorted(STATUSES))}", "ViewDefinition.status")
    name = _string(view.get("name"), "ViewDefinition.name")
    if name is not None and not SQL_NAME.fullmatch(name):
        raise _invalid("must match ^[A-Za-z][A-Za-z0-9_]*$", "ViewDefinition.name")
    constants = _constants(view.get("constant"))
    where = []
    for n, element in enumerate(_objects(view.get("where"), "ViewDefinition.where")):
        location = f"ViewDefinition.where[{n}]"
        _known(element, _WHERE_KEYS, location)
        path = _string(element.get("path"), f"{location}.path", required=True)
        where.append(Where(f"{location}.path", _compile(path, constants, f"{location}.path")))
    selects = [
        _select(element, f"ViewDefinition.select[{n}]", constants)
        for n, element in enumerate(_objects(view.get("select"), "ViewDefinition.select", True))
    ]
    root = _structure("ViewDefinition", (), tuple(selects), (), None, ())
    _check_unique(root)
    return ViewDefinition(str(resource), constants, tuple(where), root)


def _constants(value: Any) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    for n, element in enumerate(_objects(value, "ViewDefinition.constant")):
        location = f"ViewDefinition.constant[{n}]"
        name = _string(element.get("name"), f"{location}.name", required=True)
        if not SQL_NAME.fullmatch(str(name)):
            raise _invalid("must match ^[A-Za-z][A-Za-z0-9_]*$", f"{location}.name")
        if name in constants:
            raise _invalid(f"constant {name} is defined twice", f"{location}.name")
        values = [key for key in element if key.startswith("value")]
        if len(values) != 1:
            raise _invalid("needs exactly one value[x]", f"{location}.value[x]", "required")
        kind = values[0][5:6].lower() + values[0][6:]
        if kind not in CONSTANT_TYPES:
            raise _invalid(f"{values[0]} is not an allowed type", f"{location}.{values[0]}")
        if not value_test(kind)(element[values[0]]):
            raise _invalid(f"is not a valid {kind}", f"{location}.{values[0]}")
        constants[str(name)] = element[values[0]]
    return constants


def _compile(path: str | None, constants: Mapping[str, Any], location: str) -> Fn:
    try:
        return compile_path(str(path), constants)
    except PathError as error:
        raise _invalid(str(error), location) from error
    except Unsupported:
        pass
    try:
        return compile_fallback(str(path), constants)
    except Exception as error:  # noqa: BLE001 - fhirpathpy raises plain exceptions
        raise _invalid(f"FHIRPath not supported: {error}", location, "not-supported") from error


def _select(element: dict[str, Any], location: str, constants: Mapping[str, Any]) -> Select:
    _known(element, _SELECT_KEYS, location)
    given = [key for key in ITERATIONS if key in element]
    if len(given) > 1:
        raise _invalid("only one of forEach, forEachOrNull and repeat may be given", location)
    iteration = given[0] if given else None
    paths: list[Fn] = []
    if iteration == "repeat":
        repeat = element["repeat"]
        if not isinstance(repeat, list) or not repeat:
            raise _invalid("must be a non-empty array of paths", f"{location}.repeat", "structure")
        for n, path in enumerate(repeat):
            at = f"{location}.repeat[{n}]"
            paths.append(_compile(_string(path, at, required=True), constants, at))
    elif iteration is not None:
        at = f"{location}.{iteration}"
        paths.append(_compile(_string(element[iteration], at, required=True), constants, at))
    columns = tuple(
        _column(column, f"{location}.column[{n}]", constants)
        for n, column in enumerate(_objects(element.get("column"), f"{location}.column"))
    )
    selects = tuple(
        _select(child, f"{location}.select[{n}]", constants)
        for n, child in enumerate(_objects(element.get("select"), f"{location}.select"))
    )
    union = tuple(
        _select(child, f"{location}.unionAll[{n}]", constants)
        for n, child in enumerate(_objects(element.get("unionAll"), f"{location}.unionAll"))
    )
    for n, branch in enumerate(union[1:], start=1):
        if branch.names != union[0].names:
            raise _invalid(
                f"unionAll branches must yield the same columns in the same order: "
                f"{', '.join(branch.names)} is not {', '.join(union[0].names)}",
                f"{location}.unionAll[{n}]",
            )
    return _structure(location, columns, selects, union, iteration, tuple(paths))


def _structure(
    location: str,
    columns: tuple[Column, ...],
    selects: tuple[Select, ...],
    union: tuple[Select, ...],
    iteration: str | None,
    paths: tuple[Fn, ...],
) -> Select:
    # Column order: a select's own columns, then its nested selects', then its unionAll's.
    names = tuple(c.name for c in columns) + sum((s.names for s in selects), ())
    null_row = tuple(0 if c.path.strip() == "%rowIndex" else None for c in columns)
    null_row += sum((s.null_row for s in selects), ())
    if union:
        names += union[0].names
        null_row += union[0].null_row
    cells = tuple(c.cell for c in columns)
    return Select(location, columns, cells, selects, union, iteration, paths, names, null_row)


def _column(element: dict[str, Any], location: str, constants: Mapping[str, Any]) -> Column:
    _known(element, _COLUMN_KEYS, location)
    name = str(_string(element.get("name"), f"{location}.name", required=True))
    if not SQL_NAME.fullmatch(name):
        raise _invalid("must match ^[A-Za-z][A-Za-z0-9_]*$", f"{location}.name")
    path = str(_string(element.get("path"), f"{location}.path", required=True))
    collection = element.get("collection", False)
    if not isinstance(collection, bool):
        raise _invalid("must be true or false", f"{location}.collection", "structure")
    type_name = _string(element.get("type"), f"{location}.type")
    try:
        accepts(type_name)
    except PathError as error:
        raise _invalid(str(error), f"{location}.type") from error
    evaluate = _compile(path, constants, f"{location}.path")
    cell = compile_cell(name, f"{location}.path", evaluate, collection, type_name)
    return Column(name, path, f"{location}.path", collection, type_name, cell)


def _check_unique(root: Select) -> None:
    """Column names are unique across the view (`ValidateColumns`, Column Already Defined)."""
    seen: set[str] = set()
    for name, location in _named(root):
        if name in seen:
            raise _invalid(f"column {name} is already defined", location)
        seen.add(name)


def _output(select: Select) -> tuple[Column, ...]:
    columns = select.columns + sum((_output(child) for child in select.selects), ())
    return columns + (_output(select.union[0]) if select.union else ())


def _named(select: Select) -> list[tuple[str, str]]:
    named = [(c.name, c.location.removesuffix(".path") + ".name") for c in select.columns]
    for child in select.selects:
        named += _named(child)
    if select.union:
        named += _named(select.union[0])
    return named
