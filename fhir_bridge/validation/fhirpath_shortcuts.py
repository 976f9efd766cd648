"""Shortcuts the FHIRPath compiler takes for shapes profiles generate: code tables.

`(system = 'a' and code = 'x') or (system = 'a' and code = 'y') ...` becomes one set lookup,
and `path.exists(<code table>)` a direct per-item test, with the generic evaluation as the
fallback whenever an item does not have the simple shape the shortcut assumes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_bridge.validation.fhirpath import (
    NOT_LITERAL,
    Env,
    Fn,
    flatten,
    literal_value,
    logic_generic,
    member_path,
    member_values,
    path_chain,
    truth,
    unwrap,
)


def code_table(node: dict[str, Any]) -> Fn | None:
    """`(a = 'x' and b = 'y') or (a = 'z' and b = 'w') ...` as one set lookup.

    Profiles list accepted codes this way; evaluated naively it costs one equality per
    alternative per item. Only exact when every path yields one value: otherwise None.
    """
    rows: list[tuple[Any, ...]] = []
    paths: list[list[str]] | None = None
    for disjunct in flatten(node, "or"):
        pairs = []
        for term in flatten(disjunct, "and"):
            if term.get("type") != "EqualityExpression" or term["terminalNodeText"] != ["="]:
                return None
            path, value = member_path(term["children"][0]), literal_value(term["children"][1])
            if path is None or value is NOT_LITERAL:
                return None
            pairs.append((path, value))
        pairs.sort(key=lambda pair: pair[0])
        these = [p for p, _ in pairs]
        if paths is None:
            paths = these
        elif these != paths:
            return None
        rows.append(tuple(v for _, v in pairs))
    if paths is None or len(rows) < 2:
        return None
    table = frozenset(rows)
    fallback = logic_generic(node)
    if all(len(path) == 1 for path in paths):
        return _flat_table(table, [path[0] for path in paths], fallback)

    def lookup(focus: list[Any], env: Env) -> list[Any]:
        if len(focus) == 1 and isinstance(focus[0], dict):
            key = []
            for path in paths:
                value: Any = focus[0]
                for segment in path:
                    value = value.get(segment) if isinstance(value, dict) else None
                if value is None or isinstance(value, (list, dict, bool)):
                    return fallback(focus, env)
                key.append(value)
            return [tuple(key) in table]
        return fallback(focus, env)

    return lookup


class _FlatTable:
    """The code table over direct children: usable as a per-item predicate, too."""

    __slots__ = ("table", "names", "fallback", "strings")

    def __init__(self, table: frozenset[tuple[Any, ...]], names: list[str], fallback: Fn):
        self.table, self.names, self.fallback = table, names, fallback
        # Only strings equal strings: a hit in an all-string table is a match, nothing to vet.
        self.strings = all(type(v) is str for row in table for v in row)

    def test(self, item: Any, env: Env) -> bool | None:
        if type(item) is dict:
            key = tuple(map(item.get, self.names))
            if self.strings:
                try:
                    if key in self.table:
                        return True
                except TypeError:  # an unhashable value: the generic evaluation decides
                    pass
            for value in key:
                if value is None or isinstance(value, (list, dict, bool)):
                    break
            else:
                return key in self.table
        saved = env.get("this")
        env["this"] = item
        try:
            return truth(self.fallback([item], env))
        finally:
            env["this"] = saved

    def __call__(self, focus: list[Any], env: Env) -> list[Any]:
        if len(focus) == 1:
            found = self.test(focus[0], env)
            return [] if found is None else [found]
        return self.fallback(focus, env)


def _flat_table(table: frozenset[tuple[Any, ...]], names: list[str], fallback: Fn) -> Fn:
    return _FlatTable(table, names, fallback)


Predicate = Callable[[Any, Env], "bool | None"]


def predicate(node: dict[str, Any]) -> Predicate | None:
    """A criteria expression as a direct test of one item, for the shapes profiles use:
    a code table, and `path.exists(<predicate>)` / `path.exists()` over member paths."""
    node = unwrap(node)
    if node.get("type") == "TermExpression" and node["children"][0]["type"] == "ParenthesizedTerm":
        return predicate(node["children"][0]["children"][0])
    if node.get("type") == "OrExpression" and node["terminalNodeText"] == ["or"]:
        table = code_table(node)
        return table.test if isinstance(table, _FlatTable) else None
    if node.get("type") != "InvocationExpression":
        return None
    right = node["children"][1]
    if right["type"] != "FunctionInvocation":
        return None
    functn = right["children"][0]
    if functn["children"][0]["terminalNodeText"][0] != "exists":
        return None
    path = member_path(node["children"][0])
    if path is None:
        return None
    chain = path_chain(path)
    params = functn["children"][1]["children"] if len(functn["children"]) > 1 else []
    if not params:
        return lambda item, env: bool(chain([item], env))
    inner = predicate(params[0])
    if inner is None:
        return None
    if len(path) == 2:
        return _exists_two(path[0], path[1], inner)

    def exists(item: Any, env: Env) -> bool | None:
        for value in chain([item], env):
            if inner(value, env) is True:
                return True
        return False

    return exists


def _exists_two(first: str, second: str, inner: Predicate) -> Predicate:
    """`a.b.exists(<predicate>)` (the `code.coding` of code filters) without collections."""

    def exists(item: Any, env: Env) -> bool | None:
        values: Any
        if type(item) is not dict or first not in item:
            values = member_values(item, first)
        else:
            values = item[first]
            if type(values) is not list:
                values = (values,)
        for value in values:
            if type(value) is dict and second in value:
                found = value[second]
                for leaf in found if type(found) is list else (found,):
                    if inner(leaf, env) is True:
                        return True
            else:
                for leaf in member_values(value, second):
                    if inner(leaf, env) is True:
                        return True
        return False

    table = getattr(inner, "__self__", None)
    if not isinstance(table, _FlatTable) or not table.strings or len(table.names) != 2:
        return exists
    rows, (one, two) = table.table, table.names

    def exists_in_table(item: Any, env: Env) -> bool | None:
        if type(item) is dict and first in item:
            values = item[first]
            for value in values if type(values) is list else (values,):
                if type(value) is dict and second in value:
                    found = value[second]
                    for leaf in found if type(found) is list else (found,):
                        if type(leaf) is dict:
                            try:
                                if (leaf.get(one), leaf.get(two)) in rows:
                                    return True
                            except TypeError:
                                pass
        # No direct hit: the general walk decides (and sees every odd shape).
        return exists(item, env)

    return exists_in_table
