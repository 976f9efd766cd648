"""Checks a resource against one compiled profile (see profiles.py), collecting Issues.

https://hl7.org/fhir/R4/profiling.html: cardinality, types, fixed/pattern, bindings,
min/max values, invariants and slices as the profile's snapshot states them. Each profile's
PNode tree is turned once into closures that hold only the checks each element needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.memo import Memo
from fhir_bridge.validation.definitions import PRIMITIVE_TYPES, choice_names
from fhir_bridge.validation.engine import Context
from fhir_bridge.validation.invariants import Rule
from fhir_bridge.validation.profiles import MISSING, PNode, Profile
from fhir_bridge.validation.slicing import compile_pattern, slice_finder
from fhir_bridge.validation.terminology import Terminology

Value = tuple[str, int | None, Any]
# (value, JSON key, path of the value, ctx)
ValueFn = Callable[[Any, str, str, Context], None]
# (parent object, path of the parent, ctx)
ElementFn = Callable[[dict[str, Any], str, Context], None]
# Per element, how many distinct valid (key, value) pairs are remembered.
REMEMBERED = 2048


def _number(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("value")
    return value


def _type_of_key(key: str, node: PNode) -> str:
    suffix = key[len(node.name) :]
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVE_TYPES else suffix


class _Remembering:
    """A value function for checks that read nothing outside the value (see memo.py): a value
    that passed them once at a JSON key passes again without the checks."""

    __slots__ = ("checks", "passed", "memo")

    def __init__(self, checks: ValueFn) -> None:
        self.checks = checks
        self.passed: set[tuple[str, str | int]] = set()
        self.memo = Memo()

    def __call__(self, value: Any, key: str, path: str, ctx: Context) -> None:
        # Bools are never remembered, so True cannot pass for a remembered 1.
        if type(value) is str or type(value) is int:
            if (key, value) in self.passed:
                return
            issues = len(ctx.issues)
            self.checks(value, key, path, ctx)
            if len(ctx.issues) == issues and len(self.passed) < REMEMBERED:
                self.passed.add((key, value))
            return
        memo = self.memo
        serialised = memo.key(value) if type(value) is dict else None
        if serialised is None:
            self.checks(value, key, path, ctx)
            return
        pair = (key, serialised)
        if memo.get(pair) is not None:
            return
        issues = len(ctx.issues)
        self.checks(value, key, path, ctx)
        if len(ctx.issues) == issues:
            memo.remember(pair)


def _passed_of(value_fn: ValueFn | None) -> set[tuple[str, str | int]] | None:
    """The (key, value) pairs seen passing by `value_fn`, when it remembers them."""
    return value_fn.passed if isinstance(value_fn, _Remembering) else None


def _invariants(
    rules: list[tuple[str, str, str, Rule]],
    value: dict[str, Any],
    label: str,
    path: str,
    ctx: Context,
) -> None:
    for key, severity, human, rule in rules:
        if not rule(value, ctx):
            text = f"{key}: {human}{label}"
            ctx.issues.append(Issue(severity, "invariant", text, path))  # type: ignore[arg-type]


def _reads_context(node: PNode) -> bool:
    """Whether a check in `node` or below reads the enclosing resource (%resource)."""
    return (
        node.reads_resource
        or any(_reads_context(c) for c in node.children)
        or any(_reads_context(s) for s in node.slices)
    )


class ProfileChecker:
    """Compiles profiles into closures and runs them on resources."""

    def __init__(self, terminology: Terminology, resource_types: frozenset[str]) -> None:
        self.terminology = terminology
        self.resource_types = resource_types
        self._compiled: dict[int, tuple[Profile, ElementFn]] = {}

    def forget(self) -> None:
        """Drop the compiled checks and what they remember: value sets changed."""
        self._compiled.clear()

    def check(self, resource: dict[str, Any], profile: Profile, path: str, ctx: Context) -> None:
        """Append to ctx.issues what `resource` breaks of `profile`."""
        entry = self._compiled.get(id(profile))
        if entry is None or entry[0] is not profile:
            entry = (profile, self._root(profile))
            self._compiled[id(profile)] = entry
        entry[1](resource, path, ctx)

    def _root(self, profile: Profile) -> ElementFn:
        label = f" (profile {profile.url})"
        root = profile.root
        rules = root.rules
        children = [self._element(c, label) for c in root.children if c.relevant]

        def check_root(resource: dict[str, Any], path: str, ctx: Context) -> None:
            _invariants(rules, resource, label, path, ctx)
            for child in children:
                child(resource, path, ctx)

        return check_root

    def _element(self, node: PNode, label: str) -> ElementFn:
        """Checks of one element within its parent object: counts, values, slices.
        A sliced element's whole value is remembered (see memo.py) when no check reads
        outside it: the slicing of a repeated category or extension list runs once."""
        element_fn = self._element_unremembered(node, label)
        if node.discriminators is None or node.choice or _reads_context(node):
            return element_fn
        name, memo = node.name, Memo()

        def remembered(obj: dict[str, Any], path: str, ctx: Context) -> None:
            value = obj.get(name)
            key, passed = memo.lookup(value) if value is not None else (None, None)
            if passed is not None:
                return
            issues = len(ctx.issues)
            element_fn(obj, path, ctx)
            if key is not None and len(ctx.issues) == issues:
                memo.remember(key)

        return remembered

    def _element_unremembered(self, node: PNode, label: str) -> ElementFn:
        name, low, high = node.name, node.min, node.max
        check_min, check_max = node.check_min, node.check_max and node.max is not None
        value_fn = self._value(node, label)
        slicer = self._slicer(node, label) if node.discriminators is not None else None

        def counts(count: int, path: str, ctx: Context) -> None:
            if check_min and count < low:
                text = f"minimum required = {low}, but only found {count} ({node.id}){label}"
                ctx.issues.append(Issue("error", "required", text, f"{path}.{name}"))
            if check_max and count > high:  # type: ignore[operator]
                text = f"maximum allowed = {high}, but found {count} ({node.id}){label}"
                ctx.issues.append(Issue("error", "value", text, f"{path}.{name}"))

        def run(values: list[Value], path: str, ctx: Context) -> None:
            counts(len(values), path, ctx)
            if value_fn is not None:
                for key, index, value in values:
                    where = f"{path}.{key}" if index is None else f"{path}.{key}[{index}]"
                    value_fn(value, key, where, ctx)
            if slicer is not None:
                slicer(values, path, ctx)

        has_counts = check_min or check_max
        # Whether one value present can break the counts (min above 1 or max 0).
        one_can_fail = (check_min and low > 1) or (check_max and high is not None and high < 1)
        if node.choice and slicer is None:
            names = choice_names(name)
            # A value that passed this element's checks once passes again (see _Remembering);
            # looked up here, before the path to the value is even formatted.
            passed = _passed_of(value_fn)

            def choice_values(obj: dict[str, Any], path: str, ctx: Context) -> None:
                present = names.intersection(obj)
                if has_counts:
                    counts(len(present), path, ctx)
                if value_fn is not None and present:
                    if len(present) == 1:
                        key = next(iter(present))
                        value = obj[key]
                        if (
                            passed is not None
                            and (type(value) is str or type(value) is int)
                            and (key, value) in passed
                        ):
                            return
                        value_fn(value, key, f"{path}.{key}", ctx)
                        return
                    for key in [k for k in obj if k in present]:
                        value_fn(obj[key], key, f"{path}.{key}", ctx)

            return choice_values

        if node.choice:
            names = choice_names(name)

            def choice(obj: dict[str, Any], path: str, ctx: Context) -> None:
                present = names.intersection(obj)
                if len(present) == 1:
                    key = next(iter(present))
                    run([(key, None, obj[key])], path, ctx)
                else:
                    run([(k, None, v) for k, v in obj.items() if k in present], path, ctx)

            return choice

        def element(obj: dict[str, Any], path: str, ctx: Context) -> None:
            value = obj.get(name, MISSING)
            if value is MISSING:
                run([(name, None, None)] if "_" + name in obj else [], path, ctx)
            elif type(value) is list:
                if slicer is None:
                    if has_counts:
                        counts(len(value), path, ctx)
                    if value_fn is not None:
                        prefix = f"{path}.{name}["
                        for i, item in enumerate(value):
                            value_fn(item, name, f"{prefix}{i}]", ctx)
                else:
                    run([(name, i, v) for i, v in enumerate(value)], path, ctx)
            elif slicer is None:
                if one_can_fail:
                    counts(1, path, ctx)
                if value_fn is not None:
                    value_fn(value, name, f"{path}.{name}", ctx)
            else:
                run([(name, None, value)], path, ctx)

        return element

    def _value(self, node: PNode, label: str) -> ValueFn | None:
        """Checks of one value of an element (and of its children); None when there are none.
        Remembering, unless a check reads outside the value."""
        value_fn = self._value_unremembered(node, label)
        if value_fn is None or _reads_context(node):
            return value_fn
        return _Remembering(value_fn)

    def _value_unremembered(self, node: PNode, label: str) -> ValueFn | None:
        checks = self._value_checks(node, label)
        rules = node.rules
        children = [self._element(c, label) for c in node.children if c.relevant]
        types = node.types
        if types is None and not checks and not rules and not children:
            return None
        allowed = ", ".join(sorted(types)) if types else ""
        allowed_keys = frozenset(node.name + t[0].upper() + t[1:] for t in types or ())

        def value_fn(value: Any, key: str, path: str, ctx: Context) -> None:
            if types is not None and key not in allowed_keys:
                shown = _type_of_key(key, node)
                text = f"type {shown} is not allowed (allowed: {allowed}){label}"
                ctx.issues.append(Issue("error", "structure", text, path))
                return
            for check in checks:
                check(value, key, path, ctx)
            if type(value) is not dict:
                return
            _invariants(rules, value, label, path, ctx)
            for child in children:
                child(value, path, ctx)

        return value_fn

    def _value_checks(self, node: PNode, label: str) -> list[ValueFn]:
        checks: list[ValueFn] = []
        if node.fixed is not MISSING:
            fixed = node.fixed

            def check_fixed(value: Any, key: str, path: str, ctx: Context) -> None:
                if value != fixed:
                    text = f"value must be exactly {fixed!r} ({node.id}){label}"
                    ctx.issues.append(Issue("error", "value", text, path))

            checks.append(check_fixed)
        if node.pattern is not MISSING and not node.discriminating:
            pattern, matches = node.pattern, compile_pattern(node.pattern)

            def check_pattern(value: Any, key: str, path: str, ctx: Context) -> None:
                if not matches(value):
                    text = f"value does not match the pattern {pattern!r} ({node.id}){label}"
                    ctx.issues.append(Issue("error", "value", text, path))

            checks.append(check_pattern)
        if node.binding is not None:
            checks.append(self._binding(node, label))
        if node.min_value is not None or node.max_value is not None:
            low, high = _number(node.min_value), _number(node.max_value)

            def check_range(value: Any, key: str, path: str, ctx: Context) -> None:
                number = value.get("value") if type(value) is dict else _number(value)
                if number is None or isinstance(number, bool):
                    return
                try:
                    if low is not None and number < low:
                        text = f"value {number} is below the minimum {low} ({node.id}){label}"
                        ctx.issues.append(Issue("error", "value", text, path))
                    if high is not None and number > high:
                        text = f"value {number} is above the maximum {high} ({node.id}){label}"
                        ctx.issues.append(Issue("error", "value", text, path))
                except TypeError:
                    return

            checks.append(check_range)
        if node.targets is not None:
            checks.append(self._target(node, label))
        return checks

    def _binding(self, node: PNode, label: str) -> ValueFn:
        terminology, binding = self.terminology, node.binding
        assert binding is not None

        def check_binding(value: Any, key: str, path: str, ctx: Context) -> None:
            type_code = _type_of_key(key, node) if node.choice else node.type_code
            issue = terminology.check(value, type_code, binding, path)
            if issue is not None:
                text = issue.diagnostics + label
                ctx.issues.append(Issue(issue.severity, issue.code, text, path))
            elif binding[1] not in terminology.codes:
                text = f"value set {binding[1]} is unknown; binding not checked{label}"
                ctx.issues.append(Issue("warning", "processing", text, path))

        return check_binding

    def _target(self, node: PNode, label: str) -> ValueFn:
        targets, resource_types = node.targets or frozenset(), self.resource_types
        allowed = ", ".join(sorted(targets))

        def check_target(value: Any, key: str, path: str, ctx: Context) -> None:
            ref = value.get("reference") if type(value) is dict else None
            if not isinstance(ref, str):
                return
            if ref.startswith("#"):
                target = ctx.contained_types().get(ref[1:])
            else:
                head, _, tail = ref.partition("/")
                if "/" not in tail and "?" not in ref and tail not in resource_types:
                    target = head if head in resource_types else None  # the usual Type/id
                else:
                    parts = ref.split("?", 1)[0].split("/")
                    candidates = [p for p in parts if p in resource_types]
                    target = candidates[-1] if candidates else None
            if target is not None and target not in targets:
                text = f"reference to a {target} is not allowed (allowed: {allowed}){label}"
                ctx.issues.append(Issue("error", "structure", text, f"{path}.reference"))

        return check_target

    def _slicer(self, node: PNode, label: str) -> Callable[[list[Value], str, Context], None]:
        """Assign values to slices, then check each slice's counts and values."""
        slices = node.slices
        slice_fns = [self._value(s, label) for s in slices]
        closed, name, find = node.closed, node.name, slice_finder(node)
        bounds = [(i, s.min, s.max, s.id, slice_fns[i]) for i, s in enumerate(slices)]
        zeros = [0] * len(slices)
        # An item that went to a slice and passed its checks goes there and passes again.
        memo = None if _reads_context(node) else Memo()

        def where(key: str, index: int | None, path: str) -> str:
            return f"{path}.{key}" if index is None else f"{path}.{key}[{index}]"

        def slicer(values: list[Value], path: str, ctx: Context) -> None:
            counts = zeros.copy()
            # Members not remembered, checked slice by slice in their order within a slice.
            unchecked: list[tuple[int, str, int | None, Any, tuple[str, bytes] | None]] = []
            for key, index, value in values:
                # by JSON key and value: a choice's type (valueString, valueDateTime) matters
                serialised = memo.key(value) if memo is not None else None
                remember = None if serialised is None else (key, serialised)
                i = None if remember is None else memo.get(remember)  # type: ignore[union-attr]
                if i is not None:
                    counts[i] += 1
                    continue
                i = find(value) if value is not None else None
                if i is not None:
                    counts[i] += 1
                    unchecked.append((i, key, index, value, remember))
                elif closed:
                    text = f"does not match any slice of {node.id} (slicing is closed){label}"
                    ctx.issues.append(Issue("error", "structure", text, where(key, index, path)))
            issues = ctx.issues
            for i, low, high, slice_id, _ in bounds:
                count = counts[i]
                if count < low:
                    text = f"slice {slice_id}: minimum required = {low}, but only found {count}"
                    issues.append(Issue("error", "required", text + label, f"{path}.{name}"))
                elif high is not None and count > high:
                    text = f"slice {slice_id}: maximum allowed = {high}, but found {count}"
                    extra = [(k, n) for k, n, v in values if v is not None and find(v) == i][high]
                    issues.append(Issue("error", "value", text + label, where(*extra, path)))
            unchecked.sort(key=lambda member: member[0])
            for i, key, index, value, remember in unchecked:
                fn = bounds[i][4]
                before = len(issues)
                if fn is not None:
                    fn(value, key, where(key, index, path), ctx)
                if remember is not None and len(issues) == before:
                    memo.remember(remember, i)  # type: ignore[union-attr]

        return slicer
