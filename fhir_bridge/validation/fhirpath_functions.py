"""The FHIRPath function library of the compiler: where, exists, all, select, aggregate, iif,
count, first, ofType, startsWith, matches and the other functions core invariants call.

https://hl7.org/fhirpath/N1/#functions
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhir_bridge.validation.fhirpath import (
    Env,
    Fn,
    Unsupported,
    compile_node,
    equal,
    singleton,
    truth,
    type_test,
    unwrap,
)
from fhir_bridge.validation.fhirpath_shortcuts import predicate


def _source(node: dict[str, Any]) -> str:
    """A canonical text of a subtree: equal sub-expressions get equal keys."""
    parts = [node.get("type", ""), *map(str, node.get("terminalNodeText") or ())]
    parts.extend(_source(c) for c in node.get("children") or ())
    return "(" + " ".join(parts) + ")"


def _uses(node: dict[str, Any], kind: str) -> bool:
    return node.get("type") == kind or any(_uses(c, kind) for c in node.get("children") or ())


def _per_item(params: list[dict[str, Any]], combine: str) -> Fn:
    criteria = compile_node(params[0])
    # Invariants often repeat the same filter (count it, then sum it): within one evaluation
    # the data cannot change, so a where() over the same items is computed once.
    memo = combine == "where" and not _uses(params[0], "TotalInvocation")
    source = _source(params[0])

    def run(focus: list[Any], env: Env) -> list[Any]:
        if memo:
            key = (source, *map(id, focus))
            cache = env.setdefault("memo", {})
            if key in cache:
                return list(cache[key])
            result = evaluate(focus, env)
            cache[key] = result
            return list(result)
        return evaluate(focus, env)

    test = predicate(params[0]) if combine in ("where", "exists", "all") else None

    def evaluate(focus: list[Any], env: Env) -> list[Any]:
        if test is not None:
            if combine == "where":
                return [item for item in focus if test(item, env) is True]
            if combine == "exists":
                return [any(test(item, env) is True for item in focus)]
            return [all(test(item, env) is True for item in focus)]
        out: list[Any] = []
        saved = env.get("this")
        try:
            for item in focus:
                env["this"] = item
                result = criteria([item], env)
                if combine == "where":
                    if truth(result) is True:
                        out.append(item)
                elif combine == "select":
                    out.extend(result)
                elif combine == "all":
                    if truth(result) is not True:
                        return [False]
                elif truth(result) is True:  # exists(criteria)
                    return [True]
        finally:
            env["this"] = saved
        if combine == "all":
            return [True]
        if combine == "exists":
            return [False]
        return out

    return run


def _is_sum(node: dict[str, Any]) -> bool:
    """`$this + $total` (or `$total + $this`): the R4 idiom for a sum, which has no sum()."""
    node = unwrap(node)
    if node.get("type") != "AdditiveExpression" or node["terminalNodeText"] != ["+"]:
        return False
    kinds = set()
    for child in node["children"]:
        child = unwrap(child)
        while child.get("type") in ("TermExpression", "InvocationTerm") and child.get("children"):
            child = child["children"][0]
        kinds.add(child.get("type"))
    return kinds == {"ThisInvocation", "TotalInvocation"}


def _aggregate(params: list[dict[str, Any]]) -> Fn:
    step = compile_node(params[0])
    init = compile_node(params[1]) if len(params) > 1 else None
    generic = _aggregate_generic(step, init)
    if not _is_sum(params[0]):
        return generic

    def total_sum(focus: list[Any], env: Env) -> list[Any]:
        start = init(focus, env) if init is not None else []
        if len(start) != 1 or type(start[0]) not in (int, float):
            return generic(focus, env)
        total = start[0]
        for item in focus:
            if type(item) not in (int, float):
                return generic(focus, env)
            total += item
        return [total]

    return total_sum


def _aggregate_generic(step: Fn, init: Fn | None) -> Fn:

    def aggregate(focus: list[Any], env: Env) -> list[Any]:
        saved_this, saved_total = env.get("this"), env.get("total")
        total = init(focus, env) if init is not None else []
        try:
            for item in focus:
                env["this"], env["total"] = item, total
                total = step([item], env)
        finally:
            env["this"], env["total"] = saved_this, saved_total
        return total

    return aggregate


def _iif(params: list[dict[str, Any]]) -> Fn:
    condition = compile_node(params[0])
    then = compile_node(params[1])
    otherwise = compile_node(params[2]) if len(params) > 2 else None

    def iif(focus: list[Any], env: Env) -> list[Any]:
        if truth(condition(focus, env)) is True:
            return then(focus, env)
        return otherwise(focus, env) if otherwise is not None else []

    return iif


def _simple(fn: Callable[[list[Any]], list[Any]]) -> Callable[[list[dict[str, Any]]], Fn]:
    def factory(params: list[dict[str, Any]]) -> Fn:
        if params:
            raise Unsupported("unexpected parameters")
        return lambda focus, env: fn(focus)

    return factory


def _string_arg(
    name: str, test: Callable[[str, str], bool]
) -> Callable[[list[dict[str, Any]]], Fn]:
    def factory(params: list[dict[str, Any]]) -> Fn:
        arg = compile_node(params[0])

        def run(focus: list[Any], env: Env) -> list[Any]:
            value, other = singleton(focus), singleton(arg(focus, env))
            if value is None or other is None:
                return []
            if not isinstance(value, str) or not isinstance(other, str):
                raise Unsupported(f"{name} on a non-string")
            return [test(value, other)]

        return run

    return factory


def _exists(params: list[dict[str, Any]]) -> Fn:
    if params:
        return _per_item(params, "exists")
    return lambda focus, env: [bool(focus)]


def _not(focus: list[Any]) -> list[Any]:
    value = truth(focus)
    return [] if value is None else [not value]


def _distinct(focus: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in focus:
        if not any(equal(v, o) for o in out):
            out.append(v)
    return out


def _of_type(params: list[dict[str, Any]]) -> Fn:
    test = type_test(params[0]["text"])
    return lambda focus, env: [v for v in focus if test(v)]


def _to_integer(focus: list[Any]) -> list[Any]:
    value = singleton(focus)
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return [int(value)]
    return []


FUNCTIONS: dict[str, Callable[[list[dict[str, Any]]], Fn]] = {
    "exists": _exists,
    "where": lambda p: _per_item(p, "where"),
    "select": lambda p: _per_item(p, "select"),
    "all": lambda p: _per_item(p, "all"),
    "aggregate": _aggregate,
    "iif": _iif,
    "ofType": _of_type,
    "empty": _simple(lambda f: [not f]),
    "not": _simple(_not),
    "count": _simple(lambda f: [len(f)]),
    "first": _simple(lambda f: f[:1]),
    "last": _simple(lambda f: f[-1:]),
    "tail": _simple(lambda f: f[1:]),
    "hasValue": _simple(lambda f: [len(f) == 1 and not isinstance(f[0], (dict, list))]),
    "distinct": _simple(_distinct),
    "isDistinct": _simple(lambda f: [len(_distinct(f)) == len(f)]),
    "toInteger": _simple(_to_integer),
    "length": _simple(lambda f: [len(f[0])] if len(f) == 1 and isinstance(f[0], str) else []),
    "startsWith": _string_arg("startsWith", lambda s, o: s.startswith(o)),
    "endsWith": _string_arg("endsWith", lambda s, o: s.endswith(o)),
    "contains": _string_arg("contains", lambda s, o: o in s),
    "matches": _string_arg("matches", lambda s, o: re.search(o, s) is not None),
    "trace": lambda p: lambda focus, env: focus,
}
