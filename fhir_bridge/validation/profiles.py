"""Profile enforcement: a profile snapshot compiled into a pruned tree of checks.

Only what a profile adds to its base is checked here (the engine has checked the base):
tightened cardinality, type and target restrictions, fixed[x]/pattern[x], bindings,
minValue/maxValue, new invariants and slicing (discriminators value/pattern/exists/type).
https://hl7.org/fhir/R4/profiling.html and https://hl7.org/fhir/R4/profiling.html#slicing
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fhir_bridge.validation.definitions import SD_BASE
from fhir_bridge.validation.invariants import Rule, compile_rule, reads_resource
from fhir_bridge.validation.snapshot import core_snapshot

MISSING: Any = object()
UNRESOLVED: Any = object()


@dataclass(slots=True)
class Discriminator:
    """How a slice is recognised: navigate `path`, compare with `expected`."""

    kind: str
    path: list[str]
    expected: Any = UNRESOLVED
    by_pattern: bool = False


@dataclass(slots=True)
class PNode:
    """One element of a profile, with only the checks the profile adds to its base."""

    id: str
    name: str
    choice: bool
    min: int
    max: int | None
    check_min: bool = False
    check_max: bool = False
    types: frozenset[str] | None = None
    targets: frozenset[str] | None = None
    fixed: Any = MISSING
    pattern: Any = MISSING
    binding: tuple[str, str] | None = None
    type_code: str = ""
    min_value: Any = None
    max_value: Any = None
    rules: list[tuple[str, str, str, Rule]] = field(default_factory=list)
    # A rule reads the enclosing resource (%resource, %rootResource), not just the element.
    reads_resource: bool = False
    discriminators: list[Discriminator] | None = None
    # On a slice: its discriminators resolved to the values that recognise its members.
    recognisers: list[Discriminator] = field(default_factory=list)
    closed: bool = False
    slices: list[PNode] = field(default_factory=list)
    children: list[PNode] = field(default_factory=list)
    relevant: bool = False
    extension_url: str | None = None
    # (system, code) -> slice number, when every slice is recognised by one coding pattern.
    slice_index: dict[tuple[str, str], int] | None = None
    index_path: list[str] | None = None
    # True when a (system, code) hit alone proves the pattern matches.
    index_exact: bool = False
    # Its pattern is what assigns values to the enclosing slice: already checked.
    discriminating: bool = False


@dataclass(slots=True)
class Profile:
    """A compiled profile: its canonical URL, constrained type and check tree."""

    url: str
    type: str
    root: PNode
    snapshot: list[dict[str, Any]]


def _max(value: Any) -> int | None:
    return None if value in (None, "*") else int(value)


def _prefixed(e: dict[str, Any], prefix: str) -> tuple[str, Any] | None:
    for key, value in e.items():
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
            return key[len(prefix) :], value
    return None


@lru_cache(maxsize=256)
def _core_element(path: str) -> dict[str, Any] | None:
    type_name = path.split(".", 1)[0]
    for e in core_snapshot(type_name) or []:
        if e["path"] == path:
            return e
    return None


def _target_names(t: dict[str, Any], profile_types: dict[str, str]) -> set[str]:
    names = set()
    for url in t.get("targetProfile", []):
        if url.startswith(SD_BASE):
            names.add(url.removeprefix(SD_BASE))
        elif url in profile_types:
            names.add(profile_types[url])
    return names


class ProfileCompiler:
    """Builds PNode trees from snapshot elements, comparing each with its base element."""

    def __init__(self, profile_types: dict[str, str]) -> None:
        self.profile_types = profile_types

    def compile(self, url: str, sd: dict[str, Any]) -> Profile:
        elements: list[dict[str, Any]] = sd["snapshot"]["element"]
        nodes: dict[str, PNode] = {}
        root = self._node(elements[0], is_slice=False)
        nodes[elements[0].get("id", elements[0]["path"])] = root
        for e in elements[1:]:
            element_id = e.get("id") or e["path"]
            parent_id, _, last = element_id.rpartition(".")
            is_slice = ":" in last
            node = self._node(e, is_slice)
            nodes[element_id] = node
            if is_slice:
                owner = nodes.get(f"{parent_id}.{last.split(':', 1)[0]}")
                if owner is not None:
                    owner.slices.append(node)
            else:
                parent = nodes.get(parent_id)
                if parent is not None:
                    parent.children.append(node)
            if e.get("slicing"):
                slicing = e["slicing"]
                node.discriminators = [
                    Discriminator(d["type"], [] if d["path"] == "$this" else d["path"].split("."))
                    for d in slicing.get("discriminator", [])
                ]
                node.closed = slicing.get("rules") == "closed"
        self._finish(root)
        return Profile(url, str(sd["type"]), root, elements)

    def _node(self, e: dict[str, Any], is_slice: bool) -> PNode:
        path: str = e["path"]
        last = path.rsplit(".", 1)[-1]
        choice = last.endswith("[x]")
        node = PNode(
            id=e.get("id", path),
            name=last[:-3] if choice else last,
            choice=choice,
            min=int(e.get("min", 0)),
            max=_max(e.get("max")),
        )
        base_info = e.get("base", {})
        base = _core_element(base_info.get("path", path))
        base_min = int(base_info.get("min", 0))
        base_max = _max(base_info.get("max", "*"))
        node.check_min = is_slice or node.min > base_min
        node.check_max = is_slice or (
            node.max is not None and (base_max is None or node.max < base_max)
        )
        types = e.get("type", [])
        node.type_code = types[0]["code"] if len(types) == 1 else ""
        if node.type_code == "Extension" and types[0].get("profile"):
            node.extension_url = str(types[0]["profile"][0])
        base_types = (base or {}).get("type", [])
        if choice and base is not None and len(types) < len(base_types):
            node.types = frozenset(t["code"] for t in types)
        targets: set[str] = set()
        for t in types:
            targets |= _target_names(t, self.profile_types)
        base_targets: set[str] = set()
        for t in base_types:
            base_targets |= _target_names(t, self.profile_types)
        if targets and targets != base_targets and "Resource" not in targets:
            node.targets = frozenset(targets)
        for prefix in ("fixed", "pattern"):
            found = _prefixed(e, prefix)
            if found is not None:
                setattr(node, prefix, found[1])
                node.type_code = node.type_code or found[0]
        binding = e.get("binding")
        if binding and binding.get("valueSet"):
            pair = (str(binding["strength"]), str(binding["valueSet"]).split("|")[0])
            base_binding = (base or {}).get("binding") or {}
            base_value_set = str(base_binding.get("valueSet", "")).split("|")[0]
            base_pair = (base_binding.get("strength"), base_value_set)
            if base_pair != (pair[0], pair[1]) and pair[0] in ("required", "extensible"):
                node.binding = pair
        found = _prefixed(e, "minValue")
        node.min_value = found[1] if found else None
        found = _prefixed(e, "maxValue")
        node.max_value = found[1] if found else None
        base_keys = {c.get("key") for c in (base or {}).get("constraint", [])}
        for c in e.get("constraint", []):
            key = c.get("key", "")
            if key in base_keys or key == "ele-1" or not c.get("expression"):
                continue
            if "." not in path and c.get("source", "").startswith(SD_BASE):
                continue  # the resource's own core invariants are run by the engine
            rule = compile_rule(f"{node.id}#{key}", c["expression"], path)
            if rule is not None:
                node.rules.append((key, c.get("severity", "error"), c.get("human", ""), rule))
                node.reads_resource |= reads_resource(key, c["expression"])
        return node

    def _finish(self, node: PNode) -> bool:
        relevant = False
        # Slices first: a pattern that only recognises a slice needs no second check.
        if node.discriminators is not None:
            if node.slices and self._resolve_slices(node):
                relevant = True
            else:
                node.discriminators = None
        for child in node.children:
            relevant = self._finish(child) or relevant
        for s in node.slices:
            self._finish(s)
        node.relevant = relevant or bool(
            node.check_min
            or node.check_max
            or node.types
            or node.targets
            or node.fixed is not MISSING
            or (node.pattern is not MISSING and not node.discriminating)
            or node.binding
            or node.min_value is not None
            or node.max_value is not None
            or node.rules
        )
        return node.relevant

    def _resolve_slices(self, node: PNode) -> bool:
        """Work out each slice's discriminator values; False when any cannot be resolved."""
        per_slice: list[list[Discriminator]] = []
        for s in node.slices:
            resolved = []
            for d in node.discriminators or []:
                r = Discriminator(d.kind, d.path)
                if not self._resolve(s, r):
                    return False
                resolved.append(r)
            per_slice.append(resolved)
        for s, resolved in zip(node.slices, per_slice, strict=True):
            s.recognisers = resolved
        node.slice_index, node.index_path = _coding_index(per_slice)
        node.index_exact = node.slice_index is not None and all(
            set(d[0].expected["coding"][0]) <= {"system", "code"} for d in per_slice
        )
        return True

    def _resolve(self, slice_node: PNode, d: Discriminator) -> bool:
        current = slice_node
        for i, segment in enumerate(d.path):
            value = current.fixed if current.fixed is not MISSING else current.pattern
            if value is not MISSING:
                d.expected, d.by_pattern = _navigate_pattern(value, d.path[i:]), True
                return d.expected is not UNRESOLVED
            child = next((c for c in current.children if c.name == segment), None)
            if child is None:
                if segment == "url" and d.kind == "value":
                    profile_url = _extension_profile(slice_node)
                    if profile_url is not None:
                        d.expected = profile_url
                        return True
                return False
            current = child
        if d.kind == "exists":
            d.expected = current.min > 0
            return True
        if d.kind == "type":
            d.expected = current.types or (
                frozenset({current.type_code}) if current.type_code else None
            )
            return d.expected is not None
        if current.fixed is not MISSING:
            d.expected = current.fixed
            return True
        if current.pattern is not MISSING:
            d.expected, d.by_pattern = current.pattern, True
            current.discriminating = True
            return True
        return False


def _extension_profile(node: PNode) -> str | None:
    return node.extension_url


def _navigate_pattern(value: Any, path: list[str]) -> Any:
    for segment in path:
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else UNRESOLVED
        if not isinstance(value, dict) or segment not in value:
            return UNRESOLVED
        value = value[segment]
    return value


def _coding_index(
    per_slice: list[list[Discriminator]],
) -> tuple[dict[tuple[str, str], int] | None, list[str] | None]:
    """Index slices by the one coding their pattern requires (the common 'slice by code')."""
    index: dict[tuple[str, str], int] = {}
    path: list[str] | None = None
    for i, resolved in enumerate(per_slice):
        if len(resolved) != 1 or not resolved[0].by_pattern:
            return None, None
        d = resolved[0]
        codings = d.expected.get("coding") if isinstance(d.expected, dict) else None
        if not isinstance(codings, list) or len(codings) != 1 or len(d.expected) != 1:
            return None, None
        system, code = codings[0].get("system"), codings[0].get("code")
        if not isinstance(system, str) or not isinstance(code, str) or (system, code) in index:
            return None, None
        if path is not None and d.path != path:
            return None, None
        path = d.path
        index[(system, code)] = i
    return index, path
