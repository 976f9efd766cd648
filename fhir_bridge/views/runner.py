"""The view runner: the rows a ViewDefinition yields over resources, one resource at a time.

Rows come out as dicts in column order while the resources stream in; only one resource's
rows are held at once. https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#processing-algorithm
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.validation.fhirpath import Env, Unsupported
from fhir_bridge.views.definition import Column, Select, ViewDefinition
from fhir_bridge.views.paths import ROW_INDEX

Row = tuple[Any, ...]
# Errors a path can raise on data it does not fit (a singleton expected, strings compared
# with numbers): the view is at fault for this data, so they come out as InvalidRequestError.
_PATH_ERRORS = (Unsupported, TypeError, ValueError, ArithmeticError)


class _NoMemo(dict[Any, Any]):
    """where() results are not memoised: %rowIndex may change between two evaluations."""

    def __contains__(self, key: object) -> bool:
        return False

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def run(
    view: ViewDefinition | dict[str, Any], resources: Iterable[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The rows of `view` over `resources`, as dicts in column order; the view is checked
    before the first row (InvalidRequestError). Resources of other types are skipped.
    https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#processing-algorithm
    """
    definition = view if isinstance(view, ViewDefinition) else ViewDefinition.parse(view)
    return _rows_of(definition, resources)


def _rows_of(view: ViewDefinition, resources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    names, resource_type, where, root = view.columns, view.resource, view.where, view.root
    env: Env = {"memo": _NoMemo()}
    for resource in resources:
        if resource.get("resourceType") != resource_type:
            continue
        env["resource"] = env["rootResource"] = env["context"] = env["this"] = resource
        env[ROW_INDEX] = 0
        if where and not _included(view, resource, env):
            continue
        for row in _rows(root, resource, env):
            yield dict(zip(names, row, strict=True))


def _included(view: ViewDefinition, resource: dict[str, Any], env: Env) -> bool:
    for where in view.where:
        try:
            result = where.evaluate([resource], env)
        except _PATH_ERRORS as error:
            raise _failed(where.location, str(error)) from error
        if not result:
            return False
        if len(result) != 1 or not isinstance(result[0], bool):
            raise _failed(where.location, "a where path must yield a boolean or nothing")
        if not result[0]:
            return False
    return True


def _failed(location: str, reason: str) -> InvalidRequestError:
    return InvalidRequestError(f"{location}: {reason}", expression=location)


def _rows(select: Select, node: Any, env: Env) -> list[Row]:
    """The rows of `select` at `node`: its own when it does not iterate, else those of each
    node it iterates over, %rowIndex counting them (`Process(S, N)` of the spec)."""
    if select.iteration is None:
        return _product(select, node, env)
    env["this"] = node
    foci = _repeat(select, node, env) if select.iteration == "repeat" else _each(select, node, env)
    if not foci:
        return [select.null_row] if select.iteration == "forEachOrNull" else []
    saved = env[ROW_INDEX]
    rows: list[Row] = []
    for index, focus in enumerate(foci):
        env[ROW_INDEX] = index
        rows.extend(_product(select, focus, env))
    # Siblings evaluated after this select see the enclosing %rowIndex again.
    env[ROW_INDEX] = saved
    return rows


def _each(select: Select, node: Any, env: Env) -> list[Any]:
    try:
        return select.paths[0]([node], env)
    except _PATH_ERRORS as error:
        raise _failed(f"{select.location}.{select.iteration}", str(error)) from error


def _repeat(select: Select, node: Any, env: Env) -> list[Any]:
    """Every node the repeat paths reach from `node`, depth first, each before its children."""
    found: list[Any] = []

    def visit(parent: Any) -> None:
        for n, path in enumerate(select.paths):
            env["this"] = parent
            try:
                children = path([parent], env)
            except _PATH_ERRORS as error:
                raise _failed(f"{select.location}.repeat[{n}]", str(error)) from error
            for child in children:
                found.append(child)
                visit(child)

    visit(node)
    return found


def _product(select: Select, node: Any, env: Env) -> list[Row]:
    """The cross product of the partial rows of `select`'s columns, nested selects and
    unionAll at one node (parent/child and sibling selects are cross joined)."""
    env["this"] = node
    focus = [node]
    rows: list[Row] = [tuple([_value(column, focus, env) for column in select.columns])]
    for child in select.selects:
        rows = _join(rows, _rows(child, node, env))
        if not rows:
            return rows
    if select.union:
        branches: list[Row] = []
        for branch in select.union:
            branches.extend(_rows(branch, node, env))
        rows = _join(rows, branches)
    return rows


def _join(left: list[Row], right: list[Row]) -> list[Row]:
    if len(right) == 1:
        only = right[0]
        return [row + only for row in left]
    if len(left) == 1:
        first = left[0]
        return [first + row for row in right]
    return [row + other for row in left for other in right]


def _value(column: Column, focus: list[Any], env: Env) -> Any:
    try:
        values = column.evaluate(focus, env)
    except _PATH_ERRORS as error:
        raise _failed(column.location, str(error)) from error
    if column.collection:
        for value in values:
            if not column.accepts(value):
                raise _mistyped(column, value)
        return values
    if not values:
        return None
    if len(values) > 1:
        raise _failed(
            column.location,
            f"column {column.name} yields {len(values)} values and is not a collection",
        )
    value = values[0]
    if not column.accepts(value):
        raise _mistyped(column, value)
    return value


def _mistyped(column: Column, value: Any) -> InvalidRequestError:
    kind = "an object" if isinstance(value, dict) else type(value).__name__
    if column.type is None:
        reason = f"column {column.name} yields {kind}: a complex value needs a column type"
    else:
        reason = f"column {column.name} is of type {column.type} but yields {kind}"
    return _failed(column.location, reason)
