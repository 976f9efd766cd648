"""_include and _revinclude: the resources a page of search matches refers to or is referred by.

https://hl7.org/fhir/R4/search.html#include — literal references through idx_reference,
canonical ones (`url`) through idx_uri; `:iterate` applies again to what each round added,
until a round adds nothing (a fixed point) or a bound is reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from fhir_bridge.domain.fhir import SUPPORTED_TYPES
from fhir_bridge.domain.search import Include, SearchRequest
from fhir_bridge.domain.search_parameters import narrowed, search_parameters
from fhir_bridge.domain.search_values import indexed
from fhir_bridge.errors import InvalidRequestError

Execute = Callable[[str, Sequence[object]], list[tuple[Any, ...]]]
Row = tuple[str, str, bytes]

# `:iterate` rounds after the first: a chain of references longer than this is cut (R4 lets a
# server limit iteration, https://hl7.org/fhir/R4/search.html#revinclude)
ITERATE_ROUNDS = 8
# no further `:iterate` round once this many resources were included
ITERATE_RESULTS = 10_000


def reference_params(a: str, resource_type: str, codes: Sequence[str], args: list[object]) -> str:
    """Condition on idx_reference rows `a` of `resource_type`: the rows of the reference
    parameters `codes`. A narrowed parameter (search_parameters.narrowed) has its base's rows
    to its target type too; `args` gets the condition's values."""
    covered = [found for code in codes if (found := narrowed(resource_type, code)) is not None]
    names = list(dict.fromkeys(codes))
    if not covered:
        args.extend(names)
        return f"{a}.param = ?" if len(names) == 1 else f"{a}.param IN ({_marks(names)})"
    wider = list(dict.fromkeys([*names, *(base for base, _ in covered)]))
    args.extend([*wider, *names])
    conditions = [f"{a}.param IN ({_marks(names)})"]
    for base, target_type in covered:
        args.extend([base, target_type])
        conditions.append(f"({a}.param = ? AND {a}.target_type = ?)")
    # the IN list leads: the index look-up goes by param, the OR only filters what it finds
    return f"{a}.param IN ({_marks(wider)}) AND ({' OR '.join(conditions)})"


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _reference_params(resource_type: str, param: str | None) -> list[str]:
    if param is not None:
        return [param]
    return [c for c, d in search_parameters(resource_type).items() if d.type == "reference"]


def _include_rows(execute: Execute, spec: Include, pool: list[Row]) -> list[Row]:
    """Resources that `pool` resources of spec.source_type refer to through spec.param."""
    sources = [row[1] for row in pool if row[0] == spec.source_type]
    if not sources:
        return []
    params = _reference_params(spec.source_type, spec.param)
    marks = _marks(sources)
    selected: list[object] = []
    rows_of = reference_params("x", spec.source_type, params, selected)
    target = " AND x.target_type = ?" if spec.target_type else ""
    target_args = [spec.target_type] if spec.target_type else []
    literal = (
        "SELECT r.resource_type, r.id, r.data FROM idx_reference x JOIN resources r "
        "ON r.resource_type = x.target_type AND r.id = x.target_id "
        f"WHERE x.resource_type = ? AND {rows_of} AND x.id IN ({marks}) "
        f"AND r.deleted = ?{target}"
    )
    canonical = (
        "SELECT r.resource_type, r.id, r.data FROM idx_reference x "
        "JOIN idx_uri u ON u.param = ? AND u.value = x.url "
        "JOIN resources r ON r.resource_type = u.resource_type AND r.id = u.id "
        f"WHERE x.resource_type = ? AND {rows_of} AND x.id IN ({marks}) "
        "AND x.target_id IS NULL AND r.deleted = ?"
        + (" AND r.resource_type = ?" if spec.target_type else "")
    )
    args: list[object] = [spec.source_type, *selected, *sources, False, *target_args]
    rows = execute(literal, args) + execute(canonical, ["url", *args])
    return [(row[0], row[1], bytes(row[2])) for row in rows]


def _revinclude_rows(execute: Execute, spec: Include, pool: list[Row], limit: int) -> list[Row]:
    """Resources of spec.source_type whose spec.param refers to a resource in `pool`; more
    than `limit` is too costly, found by reading one row more."""
    targets = [row for row in pool if spec.target_type in (None, row[0])]
    if not targets or spec.source_type == "*":
        return []
    wanted = {(row[0], row[1]) for row in targets}
    urls = []
    for row in targets:
        url = orjson.loads(row[2]).get("url")
        if isinstance(url, str):
            urls.append(indexed(url))  # as reference rows store it
    params = _reference_params(spec.source_type, spec.param)
    selected: list[object] = []
    rows_of = reference_params("x", spec.source_type, params, selected)
    ids = sorted({row[1] for row in targets})
    by_url = f" OR x.url IN ({_marks(urls)})" if urls else ""
    rows = execute(
        "SELECT r.resource_type, r.id, r.data, x.target_type, x.target_id, x.url "
        "FROM idx_reference x JOIN resources r ON r.resource_type = x.resource_type "
        f"AND r.id = x.id WHERE x.resource_type = ? AND {rows_of} "
        f"AND (x.target_id IN ({_marks(ids)}){by_url}) AND r.deleted = ? LIMIT ?",
        [spec.source_type, *selected, *ids, *urls, False, limit + 1],
    )
    if len(rows) > limit:
        raise _too_many(limit, "_revinclude")
    return [
        (row[0], row[1], bytes(row[2]))
        for row in rows
        if (row[3], row[4]) in wanted or (row[5] is not None and row[5] in urls)
    ]


def _too_many(limit: int, parameter: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"_include and _revinclude add more than {limit} resources to the page; ask for "
        "fewer matches per page (_count)",
        code="too-costly",
        expression=parameter,
    )


def _expand(specs: list[Include], pool: list[Row]) -> list[Include]:
    expanded: list[Include] = []
    for spec in specs:
        if spec.source_type == "*":
            types = sorted({row[0] for row in pool if row[0] in SUPPORTED_TYPES})
            expanded.extend(Include(t, None, None, spec.iterate) for t in types)
        else:
            expanded.append(spec)
    return expanded


def included_rows(
    execute: Execute, request: SearchRequest, matches: list[Row], limit: int = 1000
) -> list[Row]:
    """_include/_revinclude of the page, then the `:iterate` specs on what the previous round
    added, round after round, while a round adds something, at most ITERATE_ROUNDS times and
    while fewer than ITERATE_RESULTS resources were included. More than `limit` resources
    added is a 400 too-costly (a page of matches can refer to, or be referred to by, any
    number of resources)."""
    seen = {(row[0], row[1]) for row in matches}
    included: list[Row] = []

    def apply(pool: list[Row], includes: list[Include], revincludes: list[Include]) -> list[Row]:
        added = []
        rows = [r for spec in _expand(includes, pool) for r in _include_rows(execute, spec, pool)]
        rows += [r for spec in revincludes for r in _revinclude_rows(execute, spec, pool, limit)]
        for row in rows:
            if (row[0], row[1]) not in seen:
                seen.add((row[0], row[1]))
                added.append(row)
        if len(included) + len(added) > limit:
            raise _too_many(limit, "_include")
        return added

    included = added = apply(matches, request.includes, request.revincludes)
    iterate_includes = [s for s in request.includes if s.iterate]
    iterate_revincludes = [s for s in request.revincludes if s.iterate]
    if not (iterate_includes or iterate_revincludes):
        return included
    for _ in range(ITERATE_ROUNDS):
        if not added or len(included) >= ITERATE_RESULTS:
            break
        added = apply(added, iterate_includes, iterate_revincludes)
        included += added
    return included
