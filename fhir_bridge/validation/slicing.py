"""Slice membership: pattern[x] matching and the discriminators that put a value in a slice,
specialised per sliced element into finders. https://hl7.org/fhir/R4/profiling.html#slicing
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_bridge.validation.profiles import PNode

SliceFinder = Callable[[Any], int | None]


def matches_pattern(value: Any, pattern: Any) -> bool:
    """pattern[x] semantics: every element of the pattern is present with the same value."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        for key, expected in pattern.items():
            if key not in value or not matches_pattern(value[key], expected):
                return False
        return True
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(matches_pattern(v, p) for v in items) for p in pattern)
    return bool(value == pattern)


def compile_pattern(pattern: Any) -> Callable[[Any], bool]:
    """matches_pattern(value, pattern) as a closure specialised to `pattern`."""
    if isinstance(pattern, dict):
        if all(not isinstance(v, (dict, list)) for v in pattern.values()):
            pairs = tuple(pattern.items())

            def flat(value: Any) -> bool:
                if type(value) is not dict:
                    return False
                for key, expected in pairs:
                    if key not in value or value[key] != expected:
                        return False
                return True

            return flat
        parts = [(key, compile_pattern(v)) for key, v in pattern.items()]

        def nested(value: Any) -> bool:
            if type(value) is not dict:
                return False
            for key, match in parts:
                if key not in value or not match(value[key]):
                    return False
            return True

        return nested
    if isinstance(pattern, list):
        items = [compile_pattern(p) for p in pattern]

        def each(value: Any) -> bool:
            values = value if type(value) is list else [value]
            for match in items:
                for v in values:
                    if match(v):
                        break
                else:
                    return False
            return True

        return each
    return lambda value: bool(value == pattern)


def _navigate(value: Any, path: list[str]) -> list[Any]:
    current = [value]
    for segment in path:
        found: list[Any] = []
        for item in current:
            if isinstance(item, dict):
                child = item.get(segment)
                if isinstance(child, list):
                    found.extend(child)
                elif child is not None:
                    found.append(child)
        current = found
    return current


def in_slice(value: Any, s: PNode) -> bool:
    """Whether `value` meets every discriminator of slice `s`."""
    for d in s.recognisers:
        candidates = _navigate(value, d.path)
        if d.kind == "exists":
            if bool(candidates) != d.expected:
                return False
        elif d.kind == "type":
            continue
        elif d.by_pattern:
            if not any(matches_pattern(c, d.expected) for c in candidates):
                return False
        elif not any(c == d.expected for c in candidates):
            return False
    return True


def find_slice(value: Any, node: PNode) -> int | None:
    """The first slice of `node` that `value` belongs to, or None."""
    if node.slice_index is not None:
        path = node.index_path or []
        if len(path) == 1 and type(value) is dict:
            found = value.get(path[0])
            candidates = found if type(found) is list else [found]
        else:
            candidates = _navigate(value, path)
        for candidate in candidates:
            codings = candidate.get("coding") if isinstance(candidate, dict) else None
            for coding in codings if isinstance(codings, list) else ():
                if not isinstance(coding, dict):
                    continue
                i = node.slice_index.get((str(coding.get("system")), str(coding.get("code"))))
                if i is not None and (node.index_exact or in_slice(value, node.slices[i])):
                    return i
        return None
    for i, s in enumerate(node.slices):
        if in_slice(value, s):
            return i
    return None


def slice_finder(node: PNode) -> Callable[[Any], int | None]:
    """find_slice(value, node) specialised to `node`: one dict lookup per value when slices
    are told apart by one code (component.code, category) or one value (extension url)."""
    index, path = node.slice_index, node.index_path
    if index is not None and path is not None and len(path) <= 1:
        return _by_code(node, index, path[0] if path else None)
    by_value = _value_index(node)
    if by_value is not None:
        return by_value
    return lambda value: find_slice(value, node)


def _by_code(node: PNode, index: dict[tuple[str, str], int], name: str | None) -> SliceFinder:
    exact, slices = node.index_exact, node.slices

    def by_code(value: Any) -> int | None:
        if type(value) is not dict:
            return find_slice(value, node)
        found = value.get(name) if name is not None else value
        for candidate in found if type(found) is list else (found,):
            codings = candidate.get("coding") if isinstance(candidate, dict) else None
            for coding in codings if isinstance(codings, list) else ():
                if not isinstance(coding, dict):
                    continue
                system, code = coding.get("system"), coding.get("code")
                if type(system) is not str or type(code) is not str:
                    system, code = str(system), str(code)
                i = index.get((system, code))
                if i is not None and (exact or in_slice(value, slices[i])):
                    return i
        return None

    return by_code


def _value_index(node: PNode) -> SliceFinder | None:
    """Slices each recognised by one string at one key (extensions by url): a dict lookup."""
    index: dict[str, int] = {}
    name: str | None = None
    for i, s in enumerate(node.slices):
        if len(s.recognisers) != 1:
            return None
        d = s.recognisers[0]
        if d.kind != "value" or d.by_pattern or len(d.path) != 1 or type(d.expected) is not str:
            return None
        if (name is not None and d.path[0] != name) or d.expected in index:
            return None
        name = d.path[0]
        index[d.expected] = i
    if name is None:
        return None
    key = name

    def by_value(value: Any) -> int | None:
        if type(value) is not dict:
            return find_slice(value, node)
        found = value.get(key)
        # A string compares equal only to a string: anything else is no member.
        return index.get(found) if type(found) is str else find_slice(value, node)

    return by_value
