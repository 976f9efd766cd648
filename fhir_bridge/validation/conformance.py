"""Checks a resource against one compiled profile (see profiles.py), collecting Issues.

https://hl7.org/fhir/R4/profiling.html: cardinality, types, fixed/pattern, bindings,
min/max values, invariants and slices as the profile's snapshot states them.
"""

from __future__ import annotations

from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.validation.definitions import PRIMITIVE_TYPES
from fhir_bridge.validation.engine import Context
from fhir_bridge.validation.profiles import MISSING, PNode, Profile
from fhir_bridge.validation.terminology import Terminology

Value = tuple[str, int | None, Any]


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


def _values(obj: dict[str, Any], node: PNode) -> list[Value]:
    name = node.name
    if node.choice:
        size = len(name)
        return [
            (k, None, v)
            for k, v in obj.items()
            if k.startswith(name) and len(k) > size and k[size].isupper()
        ]
    value = obj.get(name, MISSING)
    if value is MISSING:
        return [(name, None, None)] if "_" + name in obj else []
    if type(value) is list:
        return [(name, i, v) for i, v in enumerate(value)]
    return [(name, None, value)]


def _number(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("value")
    return value


def _type_of_key(key: str, node: PNode) -> str:
    suffix = key[len(node.name) :]
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVE_TYPES else suffix


class ProfileChecker:
    """Walks a resource along a profile's PNode tree, pruned to the relevant nodes."""

    def __init__(self, terminology: Terminology, resource_types: frozenset[str]) -> None:
        self.terminology = terminology
        self.resource_types = resource_types

    def check(self, resource: dict[str, Any], profile: Profile, path: str, ctx: Context) -> None:
        """Append to ctx.issues what `resource` breaks of `profile`."""
        label = f" (profile {profile.url})"
        root = profile.root
        for key, severity, human, rule in root.rules:
            if not rule(resource, ctx):
                text = f"{key}: {human}{label}"
                ctx.issues.append(Issue(severity, "invariant", text, path))  # type: ignore[arg-type]
        for child in root.children:
            if child.relevant:
                self.element(resource, child, path, ctx, label)

    def element(
        self, obj: dict[str, Any], node: PNode, path: str, ctx: Context, label: str
    ) -> None:
        values = _values(obj, node)
        where = f"{path}.{node.name}"
        count = len(values)
        if node.check_min and count < node.min:
            text = f"minimum required = {node.min}, but only found {count} ({node.id}){label}"
            ctx.issues.append(Issue("error", "required", text, where))
        if node.check_max and node.max is not None and count > node.max:
            text = f"maximum allowed = {node.max}, but found {count} ({node.id}){label}"
            ctx.issues.append(Issue("error", "value", text, where))
        for key, index, value in values:
            p = f"{path}.{key}" if index is None else f"{path}.{key}[{index}]"
            self.value(value, key, node, p, ctx, label)
        if node.discriminators is not None and values:
            self.slices(values, node, path, ctx, label)
        elif node.discriminators is not None:
            for s in node.slices:
                if s.min > 0:
                    text = f"slice {s.id}: minimum required = {s.min}, but only found 0{label}"
                    ctx.issues.append(Issue("error", "required", text, where))

    def value(self, value: Any, key: str, node: PNode, path: str, ctx: Context, label: str) -> None:
        issues = ctx.issues
        if node.types is not None and _type_of_key(key, node) not in node.types:
            allowed = ", ".join(sorted(node.types))
            text = f"type {_type_of_key(key, node)} is not allowed (allowed: {allowed}){label}"
            issues.append(Issue("error", "structure", text, path))
            return
        if node.fixed is not MISSING and value != node.fixed:
            text = f"value must be exactly {node.fixed!r} ({node.id}){label}"
            issues.append(Issue("error", "value", text, path))
        if (
            node.pattern is not MISSING
            and not node.discriminating
            and not matches_pattern(value, node.pattern)
        ):
            text = f"value does not match the pattern {node.pattern!r} ({node.id}){label}"
            issues.append(Issue("error", "value", text, path))
        if node.binding is not None:
            type_code = _type_of_key(key, node) if node.choice else node.type_code
            issue = self.terminology.check(value, type_code, node.binding, path)
            if issue is not None:
                issues.append(Issue(issue.severity, issue.code, issue.diagnostics + label, path))
            elif node.binding[1] not in self.terminology.codes:
                text = f"value set {node.binding[1]} is unknown; binding not checked{label}"
                issues.append(Issue("warning", "processing", text, path))
        if node.min_value is not None or node.max_value is not None:
            self.range(value, node, path, ctx, label)
        if node.targets is not None and isinstance(value, dict):
            self.target(value, node, path, ctx, label)
        if type(value) is not dict:
            return
        for rule_key, severity, human, rule in node.rules:
            if not rule(value, ctx):
                text = f"{rule_key}: {human}{label}"
                issues.append(Issue(severity, "invariant", text, path))  # type: ignore[arg-type]
        for child in node.children:
            if child.relevant:
                self.element(value, child, path, ctx, label)

    def range(self, value: Any, node: PNode, path: str, ctx: Context, label: str) -> None:
        number = _number(value)
        if number is None or isinstance(number, bool):
            return
        low, high = _number(node.min_value), _number(node.max_value)
        try:
            if low is not None and number < low:
                text = f"value {number} is below the minimum {low} ({node.id}){label}"
                ctx.issues.append(Issue("error", "value", text, path))
            if high is not None and number > high:
                text = f"value {number} is above the maximum {high} ({node.id}){label}"
                ctx.issues.append(Issue("error", "value", text, path))
        except TypeError:
            return

    def target(
        self, value: dict[str, Any], node: PNode, path: str, ctx: Context, label: str
    ) -> None:
        ref = value.get("reference")
        if not isinstance(ref, str) or node.targets is None:
            return
        if ref.startswith("#"):
            target = next(
                (
                    c.get("resourceType")
                    for c in ctx.root.get("contained", ())
                    if isinstance(c, dict) and c.get("id") == ref[1:]
                ),
                None,
            )
        else:
            parts = ref.split("?", 1)[0].split("/")
            candidates = [p for p in parts if p in self.resource_types]
            target = candidates[-1] if candidates else None
        if target is not None and target not in node.targets:
            allowed = ", ".join(sorted(node.targets))
            text = f"reference to a {target} is not allowed (allowed: {allowed}){label}"
            ctx.issues.append(Issue("error", "structure", text, f"{path}.reference"))

    def slices(self, values: list[Value], node: PNode, path: str, ctx: Context, label: str) -> None:
        matched: dict[int, list[tuple[str, Value]]] = {i: [] for i in range(len(node.slices))}
        for item in values:
            key, index, value = item
            p = f"{path}.{key}" if index is None else f"{path}.{key}[{index}]"
            i = self.find_slice(value, node)
            if i is not None:
                matched[i].append((p, item))
            else:
                if node.closed:
                    text = f"does not match any slice of {node.id} (slicing is closed){label}"
                    ctx.issues.append(Issue("error", "structure", text, p))
        where = f"{path}.{node.name}"
        for i, s in enumerate(node.slices):
            found = matched[i]
            if len(found) < s.min:
                text = f"slice {s.id}: minimum required = {s.min}, but only found {len(found)}"
                ctx.issues.append(Issue("error", "required", text + label, where))
            if s.max is not None and len(found) > s.max:
                text = f"slice {s.id}: maximum allowed = {s.max}, but found {len(found)}"
                ctx.issues.append(Issue("error", "value", text + label, found[s.max][0]))
            for p, (key, _, value) in found:
                self.value(value, key, s, p, ctx, label)

    def find_slice(self, value: Any, node: PNode) -> int | None:
        """The first slice `value` belongs to, or None."""
        if node.slice_index is not None:
            for candidate in _navigate(value, node.index_path or []):
                for coding in candidate.get("coding", ()) if isinstance(candidate, dict) else ():
                    if not isinstance(coding, dict):
                        continue
                    i = node.slice_index.get((str(coding.get("system")), str(coding.get("code"))))
                    if i is not None and (node.index_exact or self.in_slice(value, node.slices[i])):
                        return i
            return None
        for i, s in enumerate(node.slices):
            if self.in_slice(value, s):
                return i
        return None

    @staticmethod
    def in_slice(value: Any, s: PNode) -> bool:
        for d in s.discriminators or ():
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
