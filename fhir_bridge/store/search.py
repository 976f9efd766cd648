"""FHIR search over the index tables: a SearchRequest becomes SQL, rows become a SearchResult.

https://hl7.org/fhir/R4/search.html. The same SQL on both dialects (`?` placeholders; the engine
rewrites them for PostgreSQL). The most selective positive criterion drives the query as
`r.id IN (...)`; the others are correlated EXISTS probes, answered from the covering `_probe`
indexes. A bounded count first decides whether walking ids in order is cheaper
(see `_broad`).

Paging is keyset paging: results are ordered by the `_sort` keys and then by id, and the cursor
(`_cursor`, opaque base64 JSON) carries the last row's key values. Inserts and deletes between
two page fetches never shift the pages: no row is skipped or served twice because of them, and
a new row appears on a later page only if it sorts after the cursor. (Only a resource whose own
sort value changes between fetches can move across the cursor.) `_offset` is also honoured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fhir_bridge.domain.cost import Limits
from fhir_bridge.domain.search import (
    ChainCriterion,
    Criterion,
    HasCriterion,
    ParamCriterion,
    SearchRequest,
    SearchValue,
    parse_query_string,
    parse_search,
)
from fhir_bridge.domain.search_parameters import index_params, search_parameter
from fhir_bridge.domain.search_values import indexed, indexed_prefix
from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.store.cursors import seal, unseal
from fhir_bridge.store.includes import Execute, Row, included_rows, reference_params
from fhir_bridge.store.indexing import EXACT_SUFFIX

TABLES = {
    "token": "idx_token_set",
    "string": "idx_string",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_number",
    "reference": "idx_reference",
    "uri": "idx_uri",
}
SORT_COLUMNS = {"date": ("low", "high"), "string": ("value",) * 2, "token": ("code",) * 2}
# Token values live in their sets' members (store/schema.py)
MEMBERS = "token_set_member"
TOP = "\U0010ffff"  # sorts after every other character: upper bound of a prefix range
DEFAULT_COUNT = 20
BROAD_MATCHES = 2000  # above this many driver matches, walk ids in order instead


@dataclass(slots=True)
class SearchResult:
    """One page: matches in order, included resources, the total if asked, the next cursor."""

    matches: list[Row] = field(default_factory=list)
    included: list[Row] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None  # pass back as `_cursor` for the next page


@dataclass(slots=True)
class _SQL:
    """A WHERE clause under construction with its arguments, and fresh table aliases."""

    args: list[object] = field(default_factory=list)
    aliases: int = 0

    def alias(self) -> str:
        self.aliases += 1
        return f"x{self.aliases}"


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefix(sql: _SQL, column: str, text: str) -> str:
    # The range lets a b-tree index serve a starts-with; LIKE keeps it exact in any collation.
    sql.args.extend([text, text + TOP, _like(text) + "%"])
    return f"({column} >= ? AND {column} < ? AND {column} LIKE ? ESCAPE '\\')"


def _value_condition(sql: _SQL, c: ParamCriterion, v: SearchValue, a: str) -> str:
    kind, args = c.type, sql.args
    if kind == "token":
        if c.modifier == "text":
            return _prefix(sql, f"{a}.text", v.text or "")
        parts = []
        if v.system == "":
            parts.append(f"{a}.system IS NULL")
        elif v.system is not None:
            parts.append(f"{a}.system = ?")
            args.append(indexed(v.system))
        if v.code is not None:
            parts.append(f"{a}.code = ?")
            args.append(indexed(v.code))
        return "(" + " AND ".join(parts or ["1 = 1"]) + ")"
    if kind == "string":
        if c.modifier == "exact":
            args.append(indexed(v.raw))
            return f"{a}.value = ?"
        if c.modifier == "contains":
            args.append("%" + _like(v.text or "") + "%")
            return f"{a}.value LIKE ? ESCAPE '\\'"
        return _prefix(sql, f"{a}.value", indexed_prefix(v.text or ""))
    if kind == "uri":
        url = v.url or ""
        if c.modifier == "below":
            return _prefix(sql, f"{a}.value", indexed_prefix(url))
        if c.modifier == "above":  # the stored url is the value or a parent path of it
            prefixes = [url[:i] for i, char in enumerate(url) if char == "/"] + [url]
            args.extend(indexed(p) for p in prefixes)
            return f"{a}.value IN ({', '.join('?' * len(prefixes))})"
        args.append(indexed(url))
        return f"{a}.value = ?"
    if kind == "date":
        return _date_condition(sql, v, a)
    if kind in ("number", "quantity"):
        condition = _number_condition(sql, v, a)
        if v.system:
            condition += f" AND {a}.system = ?"
            args.append(v.system)
        if v.code:
            condition += f" AND {a}.code = ?"
            args.append(v.code)
        return f"({condition})"
    if v.url is not None:
        args.append(indexed(v.url if v.version is None else f"{v.url}|{v.version}"))
        if v.target_id is None:
            return f"{a}.url = ?"
        # under this server's base: stored as that URL, or as the local reference it names
        args.extend([indexed(v.target_id), indexed(v.target_type or "")])
        return f"({a}.url = ? OR ({a}.target_id = ? AND {a}.target_type = ?))"
    target_type = c.modifier or v.target_type
    if target_type:
        args.extend([indexed(v.target_id), indexed(target_type)])
        return f"({a}.target_id = ? AND {a}.target_type = ?)"
    args.append(indexed(v.target_id))
    return f"{a}.target_id = ?"


def _date_condition(sql: _SQL, v: SearchValue, a: str) -> str:
    """Range comparisons of https://hl7.org/fhir/R4/search.html#prefix on [low, high)."""
    low, high = v.low or 0.0, v.high or 0.0
    lo, hi = f"{a}.low", f"{a}.high"
    inside = f"({lo} >= ? AND {hi} <= ?)"
    if v.prefix == "ap":
        # "approximately": the value widened by 10% of its distance from now, at least a day.
        margin = max(abs(time.time() - low) * 0.1, 86400.0)
        sql.args.extend([high + margin, low - margin])
        return f"({lo} < ? AND {hi} > ?)"
    text, args = {
        "eq": (inside, [low, high]),
        "ne": (f"({lo} < ? OR {hi} > ?)", [low, high]),
        "gt": (f"{hi} > ?", [high]),
        "lt": (f"{lo} < ?", [low]),
        "ge": (f"({hi} > ? OR {inside})", [high, low, high]),
        "le": (f"({lo} < ? OR {inside})", [low, low, high]),
        "sa": (f"{lo} >= ?", [high]),
        "eb": (f"{hi} <= ?", [low]),
    }[v.prefix]
    sql.args.extend(args)
    return text


def _number_condition(sql: _SQL, v: SearchValue, a: str) -> str:
    number, low, high = v.number or 0.0, v.low or 0.0, v.high or 0.0
    col = f"{a}.value"
    if v.prefix == "eq":
        sql.args.extend([low, high])
        return f"{col} >= ? AND {col} < ?"
    if v.prefix == "ne":
        sql.args.extend([low, high])
        return f"({col} < ? OR {col} >= ?)"
    if v.prefix == "ap":
        margin = abs(number) * 0.1
        sql.args.extend([number - margin, number + margin])
        return f"{col} >= ? AND {col} <= ?"
    operator = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}[v.prefix]
    sql.args.append(number)
    return f"{col} {operator} ?"


def _param_match(sql: _SQL, c: ParamCriterion, a: str) -> str:
    """Condition on index rows aliased `a` (besides resource_type/id) for a positive criterion."""
    suffix = EXACT_SUFFIX if c.modifier == "exact" else ""
    params = [name + suffix for name in index_params(c.resource_type, c.name)]
    if c.type == "reference":
        in_params = reference_params(a, c.resource_type, params, sql.args)
    else:
        sql.args.extend(params)
        in_params = f"{a}.param = ?" if len(params) == 1 else f"{a}.param IN (?, ?)"
    if c.missing is not None:
        return in_params
    if c.type == "token":
        m = sql.alias()
        alternatives = " OR ".join(_value_condition(sql, c, v, m) for v in c.values)
        members = f"SELECT {m}.set_id FROM {MEMBERS} {m} WHERE {alternatives}"
        return f"{in_params} AND {a}.set_id IN ({members})"
    alternatives = " OR ".join(_value_condition(sql, c, v, a) for v in c.values)
    return f"{in_params} AND ({alternatives})"


def _is_negative(c: Criterion) -> bool:
    return isinstance(c, ParamCriterion) and (
        c.missing is True or (c.modifier == "not" and c.type == "token")
    )


def ids_sql(sql: _SQL, c: Criterion) -> str:
    """SELECT of the ids of `c.resource_type` that match `c` (current, live resources)."""
    if isinstance(c, ParamCriterion) and c.name == "_id" and c.missing is not None:
        # every resource has an id: `_id:missing=true` matches none, `=false` all
        sql.args.extend([c.resource_type, False])
        always = "1 = 0" if c.missing else "1 = 1"
        return f"SELECT id FROM resources WHERE resource_type = ? AND deleted = ? AND {always}"
    if isinstance(c, ParamCriterion) and c.name == "_id":
        sql.args.extend([c.resource_type, False, *(v.code for v in c.values)])
        marks = ", ".join("?" * len(c.values))
        return (
            f"SELECT id FROM resources WHERE resource_type = ? AND deleted = ? AND id IN ({marks})"
        )
    if _is_negative(c):
        sql.args.extend([c.resource_type, False])
        inner = _positive_ids(sql, c)
        return (
            "SELECT id FROM resources WHERE resource_type = ? AND deleted = ? "
            f"AND id NOT IN ({inner})"
        )
    return _positive_ids(sql, c)


def _positive_ids(sql: _SQL, c: Criterion) -> str:
    a = sql.alias()
    if isinstance(c, ParamCriterion):
        sql.args.append(c.resource_type)
        table = TABLES[c.type] if c.name != "_id" else "resources"
        return f"SELECT {a}.id FROM {table} {a} WHERE {a}.resource_type = ? AND " + _param_match(
            sql, c, a
        )
    if isinstance(c, ChainCriterion):
        sql.args.append(c.resource_type)
        rows_of = reference_params(a, c.resource_type, [c.name], sql.args)
        branches = []
        for target_type, inner in c.targets:
            sql.args.append(target_type)
            branches.append(f"({a}.target_type = ? AND {a}.target_id IN ({ids_sql(sql, inner)}))")
            if _canonical_target(target_type):  # a canonical reference names it by its url
                u = sql.alias()
                sql.args.extend([target_type, "url"])
                urls = (
                    f"SELECT {u}.value FROM idx_uri {u} WHERE {u}.resource_type = ? "
                    f"AND {u}.param = ? AND {u}.id IN ({ids_sql(sql, inner)})"
                )
                branches.append(f"({a}.target_id IS NULL AND {a}.url IN ({urls}))")
        return (
            f"SELECT {a}.id FROM idx_reference {a} WHERE {a}.resource_type = ? "
            f"AND {rows_of} AND ({' OR '.join(branches)})"
        )
    sql.args.append(c.source_type)
    rows_of = reference_params(a, c.source_type, [c.source_param], sql.args)
    sql.args.append(c.resource_type)
    inner_sql = ids_sql(sql, c.inner)
    literal = (
        f"SELECT {a}.target_id FROM idx_reference {a} WHERE {a}.resource_type = ? "
        f"AND {rows_of} AND {a}.target_type = ? AND {a}.id IN ({inner_sql})"
    )
    if not _canonical_target(c.resource_type):
        return literal
    u, x = sql.alias(), sql.alias()  # by canonical url: the resources that have it as `url`
    sql.args.extend([c.resource_type, "url", c.source_type])
    rows_of = reference_params(x, c.source_type, [c.source_param], sql.args)
    inner_sql = ids_sql(sql, c.inner)
    return (
        f"{literal} UNION SELECT {u}.id FROM idx_uri {u} JOIN idx_reference {x} "
        f"ON {x}.url = {u}.value WHERE {u}.resource_type = ? AND {u}.param = ? "
        f"AND {x}.resource_type = ? AND {rows_of} AND {x}.target_id IS NULL "
        f"AND {x}.id IN ({inner_sql})"
    )


def _canonical_target(resource_type: str) -> bool:
    """Whether references to `resource_type` may be canonical: it has a `url` parameter."""
    return search_parameter(resource_type, "url") is not None


def _correlated(sql: _SQL, c: Criterion) -> str:
    """A condition on `r` for a criterion that does not drive the query."""
    if isinstance(c, ParamCriterion) and c.name != "_id":
        a = sql.alias()
        sql.args.append(c.resource_type)
        negate = _is_negative(c)
        if c.modifier == "not":
            c = ParamCriterion(c.resource_type, c.name, c.type, None, c.values, c.missing)
        match = _param_match(sql, c, a)
        # OFFSET 0 keeps PostgreSQL from turning the probe into a join over all matches
        exists = (
            f"EXISTS (SELECT 1 FROM {TABLES[c.type]} {a} WHERE {a}.resource_type = ? "
            f"AND {a}.id = r.id AND {match} LIMIT 1 OFFSET 0)"
        )
        return f"NOT {exists}" if negate else exists
    return f"r.id IN ({ids_sql(sql, c)})"


def _selectivity(c: Criterion) -> int:
    """Lower drives first: ids, then references to one resource, then identifiers and codes."""
    if _is_negative(c):
        return 99
    if isinstance(c, ParamCriterion):
        if c.name == "_id":
            return 0
        if c.missing is not None:
            return 50
        if c.type == "reference":
            return 1
        if c.name == "identifier":
            return 2
        return {"token": 5, "uri": 4, "string": 6, "date": 8, "number": 9, "quantity": 9}[c.type]
    return 3 if isinstance(c, HasCriterion) else 4


def where_sql(
    sql: _SQL,
    request: SearchRequest,
    drive: bool = True,
    max_parameters: int = Limits.max_search_parameters,
) -> str:
    """WHERE clause over `resources r` for all criteria of the request (ANDed).

    `drive=False` probes every criterion per row, for walking resources in id order. More
    than `max_parameters` SQL parameters is a 400 too-costly, found criterion by criterion
    (parse_search bounded how many there are, after expansion) before anything runs.
    """
    sql.args.extend([request.resource_type, False])
    parts = ["r.resource_type = ?", "r.deleted = ?"]
    ordered = sorted(request.criteria, key=_selectivity)
    for index, criterion in enumerate(ordered):
        if drive and index == 0 and not _is_negative(criterion):
            parts.append(f"r.id IN ({ids_sql(sql, criterion)})")
        else:
            parts.append(_correlated(sql, criterion))
        if len(sql.args) > max_parameters:
            raise InvalidRequestError(
                f"The search needs more than {max_parameters} SQL parameters",
                code="too-costly",
                expression=_label(criterion),
            )
    return " AND ".join(parts)


def _label(c: Criterion) -> str:
    if isinstance(c, HasCriterion):
        return f"_has:{c.source_type}:{c.source_param}"
    return c.name


def _sort_expressions(sql: _SQL, request: SearchRequest) -> list[tuple[str, bool]]:
    keys = []
    for key in request.sort:
        if key.name == "_id":
            keys.append(("r.id", key.descending))
            continue
        if key.name == "_lastUpdated":
            keys.append(("r.seq", key.descending))  # seq follows lastUpdated: same order
            continue
        table = TABLES[key.type]
        low, high = SORT_COLUMNS.get(key.type, ("value", "value"))
        values = "s"
        if key.type == "token":
            table += f" s JOIN {MEMBERS} m ON m.set_id = s.set_id"
            values = "m"
        else:
            table += " s"
        aggregate = f"MAX({values}.{high})" if key.descending else f"MIN({values}.{low})"
        params = index_params(request.resource_type, key.name)
        sql.args.extend([request.resource_type, *params])
        marks = ", ".join("?" * len(params))
        keys.append(
            (
                f"(SELECT {aggregate} FROM {table} WHERE s.resource_type = ? "
                f"AND s.id = r.id AND s.param IN ({marks}))",
                key.descending,
            )
        )
    return keys


def _keyset(args: list[object], columns: list[tuple[str, bool]], values: list[Any]) -> str:
    """Rows strictly after `values` in ORDER BY columns (NULLS LAST in both directions)."""
    disjuncts = []
    for index, (column, descending) in enumerate(columns):
        conditions, local = [], []
        for (previous, _), value in zip(columns[:index], values[:index], strict=True):
            if value is None:
                conditions.append(f"{previous} IS NULL")
            else:
                conditions.append(f"{previous} = ?")
                local.append(value)
        value = values[index]
        if value is None:
            continue  # nothing sorts after NULL on this key
        conditions.append(f"({column} {'<' if descending else '>'} ? OR {column} IS NULL)")
        local.append(value)
        disjuncts.append("(" + " AND ".join(conditions) + ")")
        args.extend(local)
    return "(" + (" OR ".join(disjuncts) or "1 = 0") + ")"


def _page_limit(request: SearchRequest, default_count: int, max_count: int) -> int:
    count = default_count if request.count is None else request.count
    return max(0, min(count, max_count))


def _sort_signature(request: SearchRequest) -> str:
    keys = ",".join(("-" if k.descending else "") + k.name for k in request.sort)
    return f"{request.resource_type}?_sort={keys}"


def run_search(
    execute: Execute,
    request: SearchRequest,
    *,
    default_count: int = DEFAULT_COUNT,
    max_count: int = 1000,
    cursor_key: bytes = b"",
    max_parameters: int = Limits.max_search_parameters,
    max_included: int = Limits.max_include_results,
) -> SearchResult:
    """One page of a type-level search, with _include/_revinclude and _total.

    https://hl7.org/fhir/R4/search.html; the same SQL on SQLite and PostgreSQL.
    """
    limit = _page_limit(request, default_count, max_count)
    result = SearchResult()
    if request.total in ("accurate", "estimate"):
        result.total = count(execute, request, max_parameters)
    if limit == 0:
        return result
    select = _SQL()
    sort = _sort_expressions(select, request)
    columns = [*sort, ("r.id", False)]
    where = _SQL(aliases=select.aliases)
    drive = bool(sort) or not _broad(execute, request)
    condition = where_sql(where, request, drive, max_parameters)
    names = [f"k{i}" for i in range(len(columns))]
    keys = ", ".join(f"{expr} AS {name}" for (expr, _), name in zip(columns, names, strict=True))
    statement = (
        f"SELECT q.resource_type, q.id, q.data, {', '.join('q.' + n for n in names)} FROM "
        f"(SELECT r.resource_type, r.id, r.data, {keys} FROM resources r WHERE {condition}) q"
    )
    args: list[object] = [*select.args, *where.args]
    q_columns = [(f"q.{n}", desc) for n, (_, desc) in zip(names, columns, strict=True)]
    if request.cursor:
        values = unseal(request.cursor, cursor_key, _sort_signature(request))
        statement += " WHERE " + _keyset(args, q_columns, values)
    order = ", ".join(f"{c} {'DESC' if d else 'ASC'} NULLS LAST" for c, d in q_columns)
    statement += f" ORDER BY {order} LIMIT ?"
    args.append(limit + 1)
    if request.offset:
        statement += " OFFSET ?"
        args.append(request.offset)
    rows = execute(statement, args)
    page = rows[:limit]
    result.matches = [(row[0], row[1], bytes(row[2])) for row in page]
    if len(rows) > limit:
        result.next_cursor = seal(list(page[-1][3:]), cursor_key, _sort_signature(request))
    if request.includes or request.revincludes:
        result.included = included_rows(execute, request, result.matches, max_included)
    return result


def _broad(execute: Execute, request: SearchRequest) -> bool:
    """Whether every positive criterion matches so many rows that walking ids in order (and
    probing each row) beats listing the matches of the best one and sorting them.

    The databases cannot weigh the two plans themselves: SQLite has no statistics, and a token
    value reaches its rows through its set, which PostgreSQL's statistics cannot see through;
    either would materialise and sort every match of e.g. `code=X` to return the first page.
    """
    drivers = [c for c in request.criteria if not _is_negative(c)]
    if not drivers:
        return False
    for driver in sorted(drivers, key=_selectivity):
        if isinstance(driver, ParamCriterion) and driver.name == "_id":
            return False
        sql = _SQL()
        inner = ids_sql(sql, driver)
        rows = execute(f"SELECT COUNT(*) FROM ({inner} LIMIT ?) d", [*sql.args, BROAD_MATCHES])
        if int(rows[0][0]) < BROAD_MATCHES:
            return False
    return True


def count(
    execute: Execute, request: SearchRequest, max_parameters: int = Limits.max_search_parameters
) -> int:
    """Number of matches of the request's criteria (for _summary=count and _total)."""
    sql = _SQL()
    condition = where_sql(sql, request, max_parameters=max_parameters)
    rows = execute(f"SELECT COUNT(*) FROM resources r WHERE {condition}", sql.args)
    return int(rows[0][0])


def find_ids(execute: Execute, resource_type: str, query: str) -> list[str]:
    """Ids of live resources matching `query` (`identifier=sys|123&...`), for conditional
    create/update/delete and conditional references; https://hl7.org/fhir/R4/http.html#ccreate.

    Unknown and empty parameters are refused: ignoring one would widen the match.
    """
    params = parse_query_string(query)
    empty = sorted({name for name, value in params if value == ""})
    if empty:
        names = ", ".join(empty)
        raise InvalidRequestError(
            f"Empty search parameter(s) in condition: {names}", expression=names
        )
    request = parse_search(resource_type, params)
    if not request.criteria and not request.unknown:
        # An empty condition would match every resource of the type.
        raise InvalidRequestError("A condition needs at least one search parameter")
    if request.unknown:
        names = ", ".join(sorted({name for name, _ in request.unknown}))
        raise InvalidRequestError(
            f"Unknown search parameter(s) in condition: {names}", expression=names
        )
    sql = _SQL()
    condition = where_sql(sql, request)
    rows = execute(f"SELECT r.id FROM resources r WHERE {condition} ORDER BY r.id", sql.args)
    return [str(row[0]) for row in rows]
