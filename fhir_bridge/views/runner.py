"""The view runner: the rows a ViewDefinition yields over resources, one resource at a time.

Rows come out as dicts in column order while the resources stream in; only one resource's
rows are held at once.
https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#processing-algorithm
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fhir_bridge.validation.fhirpath import Env
from fhir_bridge.views.columns import PATH_ERRORS, failed
from fhir_bridge.views.definition import Select, ViewDefinition
from fhir_bridge.views.paths import ROW_INDEX

Row = tuple[Any, ...]


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
    return as_dicts(definition, run_tuples(definition, resources))


def as_dicts(view: ViewDefinition, rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    """Rows of `view` given as tuples, as dicts in column order."""
    return map(_row_builder(view.columns), rows)


def run_tuples(view: ViewDefinition, resources: Iterable[dict[str, Any]]) -> Iterator[Row]:
    """The rows of `view` over `resources` as tuples in column order, as `run` makes them:
    writers of tables (CSV, Parquet) take the values without a dict per row."""
    resource_type, root = view.resource, view.root
    env: Env = {"memo": _NoMemo()}
    for resource in resources:
        if resource.get("resourceType") != resource_type:
            continue
        env["resource"] = env["rootResource"] = env["context"] = env["this"] = resource
        env[ROW_INDEX] = 0
        if view.where and not _included(view, resource, env):
            continue
        yield from _rows(root, resource, env)


def _row_builder(names: tuple[str, ...]) -> Callable[[Row], dict[str, Any]]:
    """A function that makes a row's dict, its source written out as dataclasses writes
    __init__: a third of the time of dict(zip()). Each name is a repr()'d literal."""
    items = ", ".join(f"{name!r}: row[{n}]" for n, name in enumerate(names))
    namespace: dict[str, Any] = {}
    exec(f"def build(row):\n    return {{{items}}}", namespace)
    build: Callable[[Row], dict[str, Any]] = namespace["build"]
    return build


def _included(view: ViewDefinition, resource: dict[str, Any], env: Env) -> bool:
    for where in view.where:
        try:
            result = where.evaluate([resource], env)
        except PATH_ERRORS as error:
            raise failed(where.location, str(error)) from error
        if not result:
            return False
        if len(result) != 1 or not isinstance(result[0], bool):
            raise failed(where.location, "a where path must yield a boolean or nothing")
        if not result[0]:
            return False
    return True


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
    if select.selects or select.union:
        for index, focus in enumerate(foci):
            env[ROW_INDEX] = index
            rows.extend(_product(select, focus, env))
    else:  # columns only, the usual innermost select: one row per node
        cells = select.cells
        for index, focus in enumerate(foci):
            env[ROW_INDEX] = index
            env["this"] = focus
            at = [focus]
            rows.append(tuple([cell(at, env) for cell in cells]))
    # Siblings evaluated after this select see the enclosing %rowIndex again.
    env[ROW_INDEX] = saved
    return rows


def _each(select: Select, node: Any, env: Env) -> list[Any]:
    try:
        return select.paths[0]([node], env)
    except PATH_ERRORS as error:
        raise failed(f"{select.location}.{select.iteration}", str(error)) from error


def _repeat(select: Select, node: Any, env: Env) -> list[Any]:
    """Every node the repeat paths reach from `node`, depth first, each before its children."""
    found: list[Any] = []

    def visit(parent: Any) -> None:
        for n, path in enumerate(select.paths):
            env["this"] = parent
            try:
                children = path([parent], env)
            except PATH_ERRORS as error:
                raise failed(f"{select.location}.repeat[{n}]", str(error)) from error
            for child in children:
                found.append(child)
                visit(child)

    visit(node)
    return found


def _product(select: Select, node: Any, env: Env) -> list[Row]:
    """The cross product of the partial rows of `select`'s columns, nested selects and
    unionAll at one node (parent/child and sibling selects are cross joined)."""
    env["this"] = node
    at = [node]
    rows: list[Row] = [tuple([cell(at, env) for cell in select.cells])]
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
