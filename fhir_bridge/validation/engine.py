"""The structural walk: one pass over a resource dict against the compiled base definitions.

Checks unknown elements, JSON shape and cardinality, primitive formats, `_element` primitive
extensions, choice types, bindings, references, core extensions, contained resources and the
core invariants (https://hl7.org/fhir/R4/validation.html). Each field of each structure gets
a handler closure built once, so the walk itself does no per-field decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.memo import Memo
from fhir_bridge.validation.compiler import COMPLEX, PRIMITIVE, Compiler, Field, Struct
from fhir_bridge.validation.definitions import load_definitions
from fhir_bridge.validation.invariants import HOLDS_WITHOUT, Rule, compile_rule, reads_resource
from fhir_bridge.validation.references import check_bundle, check_extension, check_reference
from fhir_bridge.validation.terminology import Terminology

# Checked with element paths by check_bundle instead of by the generic invariant runner.
ENGINE_RULES = frozenset({"bdl-3", "bdl-7"})
# Per field, the distinct string values already found valid (format and binding).
CACHE_SIZE = 2048
ELE_1 = "ele-1: All FHIR elements must have a @value or children"


def _relative(issues: list[Issue], where: str) -> tuple[tuple[str, str, str, str], ...] | None:
    """Issues found under `where`, with their paths relative to it; None if one lies outside."""
    relative = []
    for issue in issues:
        expression = issue.expression or ""
        if not expression.startswith(where):
            return None
        relative.append((issue.severity, issue.code, issue.diagnostics, expression[len(where) :]))
    return tuple(relative)


def _array_items(value: Any, where: str, ctx: Context) -> list[Any]:
    """The items of an array element's value: a single value is reported and checked as the
    one item, an empty array is reported and has none."""
    if type(value) is list:
        if not value:
            ctx.issues.append(Issue("error", "structure", "arrays must not be empty", where))
        return value
    ctx.issues.append(Issue("error", "structure", "must be a JSON array", where))
    return [value]


class Context:
    """Per-call state: issues found, the current resource (%resource), %rootResource, and the
    top-level resource with the profiles asked for it."""

    __slots__ = ("issues", "resource", "root", "top", "profiles", "_indexed", "_contained")

    def __init__(self, top: Any = None, profiles: Sequence[str] = ()) -> None:
        self.issues: list[Issue] = []
        self.resource: dict[str, Any] = {}
        self.root: dict[str, Any] = {}
        self.top = top
        self.profiles = profiles
        self._indexed: dict[str, Any] | None = None
        self._contained: dict[str, Any] = {}

    def contained_types(self) -> dict[str, Any]:
        """The root resource's contained resources, id -> resourceType (the first of an id).

        Built once per root: every `#id` reference looks its target up here, so a resource
        with n contained resources and n local references costs O(n), not O(n^2)."""
        if self._indexed is not self.root:
            index: dict[str, Any] = {}
            contained = self.root.get("contained")
            for c in contained if type(contained) is list else ():
                if type(c) is dict:
                    local_id = c.get("id")
                    if type(local_id) is str and local_id not in index:
                        index[local_id] = c.get("resourceType")
            self._indexed, self._contained = self.root, index
        return self._contained


# (key, severity, human, rule, field it applies to, key without which it holds)
CompiledRule = tuple[str, str, str, Rule, str | None, str | None]
ResourceHook = Callable[[dict[str, Any], str, Context], None]
Handler = Callable[[Any, dict[str, Any], str, Context], None]
Post = Callable[[dict[str, Any], str, Context], None]


class Engine:
    """Walks resource dicts against compiled Structs, appending Issues to a Context."""

    def __init__(self, compiler: Compiler, terminology: Terminology) -> None:
        self.structs = compiler.structs
        self.resource_types = compiler.resource_types
        self.terminology = terminology
        self.element = self.structs["Element"]
        self.extensions: dict[str, Any] = load_definitions()["extensions"]
        self.extension_types = {
            name: f.type_code for name, f in self.structs["Extension"].fields.items() if f.choice
        }
        self.resource_hook: ResourceHook | None = None
        self.memos: list[Memo] = []
        for struct in self.structs.values():
            if struct.is_resource and "id" in struct.fields:
                struct.fields["id"].check = compiler.checkers["id"]
        for struct in self.structs.values():
            for f in struct.fields.values():
                # Only bindings that can yield an issue are worth a call per value.
                if f.binding is not None and (
                    f.binding[0] not in ("required", "extensible")
                    or f.binding[1] not in terminology.codes
                ):
                    f.binding = None
        for struct in self.structs.values():
            struct.known = {
                name: set()
                for name, f in struct.fields.items()
                if f.kind == PRIMITIVE and not f.is_array
            }
        for struct in self.structs.values():
            struct.rules = self.compile_rules(struct)
        self.context_free = self._context_free()
        for struct in self.structs.values():
            struct.choice_keys = frozenset(n for names in struct.choices.values() for n in names)
            struct.walk = self.walker(struct)
        # Handlers call the walkers of their types, so they come after all walkers exist.
        for struct in self.structs.values():
            struct.handlers.update(
                {name: self.handler(f, struct.known.get(name)) for name, f in struct.fields.items()}
            )

    def _context_free(self) -> set[str]:
        """Structs whose values' checks read nothing outside the value: no resources inside,
        no invariant on the enclosing resource, in the Struct or any Struct below it."""
        below: dict[str, set[str]] = {
            key: {f.struct for f in s.fields.values() if f.kind == COMPLEX and f.struct}
            for key, s in self.structs.items()
        }
        tainted = {
            key
            for key, s in self.structs.items()
            if s.is_resource
            or any(f.kind not in (PRIMITIVE, COMPLEX) for f in s.fields.values())
            or any(reads_resource(c.key, c.expression) for c in s.constraints)
        }
        changed = True
        while changed:
            changed = False
            for key, inner in below.items():
                if key not in tainted and inner & tainted:
                    tainted.add(key)
                    changed = True
        return set(self.structs) - tainted

    def forget(self) -> None:
        """Drop what the memos remember: definitions (value sets, extensions) changed."""
        for memo in self.memos:
            memo.forget()

    def compile_rules(self, struct: Struct) -> list[CompiledRule]:
        """Bind a structure's constraints to evaluators, once."""
        compiled: list[CompiledRule] = []
        for c in struct.constraints:
            if c.key in ENGINE_RULES:
                continue
            target = struct.fields.get(c.field) if c.field else None
            if c.field and target is None:
                target = next((f for f in struct.fields.values() if f.choice == c.field), None)
            if target is not None:
                if target.kind != COMPLEX:
                    continue
                inner = self.structs.get(target.struct or "")
                # ext-1 and friends sit on both the element and the type's root: run once.
                if inner is not None and any(ic.key == c.key for ic in inner.constraints):
                    continue
                base = target.struct or target.element
            else:
                base = struct.key
            rule = compile_rule(c.key, c.expression, base)
            if rule is not None:
                guard = HOLDS_WITHOUT.get(c.key) if c.field is None else None
                compiled.append((c.key, c.severity, c.human, rule, c.field, guard))
        return compiled

    def resource(self, obj: Any, path: str, ctx: Context, contained: bool = False) -> None:
        """Validate one resource (top level, contained, or a Bundle/Parameters entry)."""
        issues = ctx.issues
        if type(obj) is not dict:
            issues.append(Issue("error", "structure", "a resource must be a JSON object", path))
            return
        rt = obj.get("resourceType")
        if type(rt) is not str:
            issues.append(Issue("error", "structure", "resourceType is missing", path))
            return
        struct = self.structs.get(rt)
        if struct is None or not struct.is_resource:
            if rt in self.resource_types:
                text = f"resource type {rt} is not supported here; its content was not checked"
                issues.append(Issue("warning", "not-supported", text, path))
            else:
                issues.append(Issue("error", "structure", f"unknown resource type {rt!r}", path))
            return
        saved = ctx.resource, ctx.root
        ctx.resource = obj
        if not contained:
            ctx.root = obj
        self.walk(obj, struct, path, ctx)
        if rt == "Bundle":
            check_bundle(obj, path, ctx)
        if self.resource_hook is not None:
            self.resource_hook(obj, path, ctx)
        ctx.resource, ctx.root = saved

    def walk(self, obj: dict[str, Any], struct: Struct, path: str, ctx: Context) -> None:
        """Check one element object against its Struct, recursing into complex children."""
        struct.walk(obj, path, ctx)

    def walker(self, struct: Struct) -> Callable[[dict[str, Any], str, Context], None]:
        """The walk of one Struct as a closure: its tables are locals."""
        handlers, slow, knowns = struct.handlers, self.unknown_key, struct.known
        required, choice_keys, rules = struct.required, struct.choice_keys, struct.rules
        choice_groups, run_rules = self.choice_groups, self.run_rules
        choice_of = {key: base for base, keys in struct.choices.items() for key in keys}

        # A string or integer already found valid for its field needs no handler call (most
        # are); bools are never cached, so True cannot pass for a known 1.
        def walk(obj: dict[str, Any], path: str, ctx: Context) -> None:
            for key, value in obj.items():
                if type(value) is str or type(value) is int:
                    known = knowns.get(key)
                    if known is not None and value in known:
                        continue
                handler = handlers.get(key)
                if handler is not None:
                    handler(value, obj, path, ctx)
                else:
                    slow(obj, struct, key, value, path, ctx)
            # After the keys: required elements, one type per choice, invariants.
            for name, keys in required:
                for k in keys:
                    if k in obj:
                        break
                else:
                    text = f"minimum required = 1, but only found 0 ({struct.key}.{name})"
                    ctx.issues.append(Issue("error", "required", text, f"{path}.{name}"))
            if choice_keys:
                present = choice_keys.intersection(obj)
                # several choice properties are fine when each is of another choice element
                if len(present) > 1 and len({choice_of[k] for k in present}) < len(present):
                    choice_groups(obj, struct, path, ctx)
            if rules:
                run_rules(obj, rules, path, ctx)

        return walk

    def unknown_key(
        self, obj: dict[str, Any], struct: Struct, key: Any, value: Any, path: str, ctx: Context
    ) -> None:
        """A key with no field: a primitive's `_` twin, resourceType, or an unknown element."""
        if type(key) is str and key[:1] == "_":
            self.primitive_extension(obj, struct, key, value, path, ctx)
        elif key != "resourceType" or not struct.is_resource:
            text = f"unknown element {key!r}"
            ctx.issues.append(Issue("error", "structure", text, f"{path}.{key}"))

    def handler(self, f: Field, known: set[str | int] | None = None) -> Handler:
        """The closure that checks the value(s) of one field wherever it occurs; `known`
        collects the strings a single primitive field has found valid."""
        if f.kind == PRIMITIVE:
            return self._primitive_handler(f, set() if known is None else known)
        if f.kind == COMPLEX:
            return self._complex_handler(f)
        return self._resource_handler(f)

    def _primitive_handler(self, f: Field, known: set[str | int]) -> Handler:
        name, check, binding, type_code = f.name, f.check, f.binding, f.type_code
        terminology = self.terminology
        assert check is not None

        def one(value: Any, where: str, ctx: Context) -> None:
            msg = check(value)
            if msg is not None:
                ctx.issues.append(Issue("error", "value", msg, where))
                return
            if binding is not None:
                issue = terminology.check(value, type_code, binding, where)
                if issue is not None:
                    ctx.issues.append(issue)
                    return
            if (type(value) is str or type(value) is int) and len(known) < CACHE_SIZE:
                known.add(value)

        if not f.is_array:

            def single(value: Any, obj: dict[str, Any], path: str, ctx: Context) -> None:
                if (type(value) is str or type(value) is int) and value in known:
                    return
                if type(value) is list:
                    text = "must not be an array"
                    ctx.issues.append(Issue("error", "structure", text, f"{path}.{name}"))
                    return
                one(value, f"{path}.{name}", ctx)

            return single

        def many(value: Any, obj: dict[str, Any], path: str, ctx: Context) -> None:
            for i, item in enumerate(_array_items(value, f"{path}.{name}", ctx)):
                if (type(item) is str or type(item) is int) and item in known:
                    continue
                if item is None:
                    ext = obj.get("_" + name)
                    if not (type(ext) is list and i < len(ext) and isinstance(ext[i], dict)):
                        text = "null is only allowed with a matching _ extension entry"
                        ctx.issues.append(Issue("error", "structure", text, f"{path}.{name}[{i}]"))
                    continue
                one(item, f"{path}.{name}[{i}]", ctx)

        return many

    def _post(self, f: Field) -> Post | None:
        """What to check on a complex value after its own walk, by datatype."""
        steps: list[Post] = []
        if f.type_code == "Reference":
            targets, types = f.targets, self.resource_types
            steps.append(lambda item, where, ctx: check_reference(item, targets, types, where, ctx))
        elif f.type_code == "Extension":
            exts, value_types = self.extensions, self.extension_types
            steps.append(
                lambda item, where, ctx: check_extension(item, exts, value_types, where, ctx)
            )
        if f.binding is not None:
            binding, type_code, terminology = f.binding, f.type_code, self.terminology

            def bound(item: dict[str, Any], where: str, ctx: Context) -> None:
                issue = terminology.check(item, type_code, binding, where)
                if issue is not None:
                    ctx.issues.append(issue)

            steps.append(bound)
        if not steps:
            return None
        if len(steps) == 1:
            return steps[0]

        def all_steps(item: dict[str, Any], where: str, ctx: Context) -> None:
            for step in steps:
                step(item, where, ctx)

        return all_steps

    def _complex_handler(self, f: Field) -> Handler:
        name, post = f.name, self._post(f)
        walk = self.structs[f.struct or ""].walk
        expected = f"expected a JSON object for {f.type_code}"
        memo = Memo() if f.struct in self.context_free else None
        if memo is not None:
            self.memos.append(memo)

        def odd(item: Any, where: str, ctx: Context) -> None:
            if type(item) is not dict:
                ctx.issues.append(Issue("error", "structure", expected, where))
            else:
                ctx.issues.append(Issue("error", "invariant", ELE_1, where))

        def check(item: dict[str, Any], where: str, ctx: Context) -> None:
            # The usual item, a dict with content. Seen before: its issues (most often none,
            # often the same warning again) are replayed at this item's path.
            issues = ctx.issues
            key, known = memo.lookup(item) if memo is not None else (None, None)
            if known is not None:
                for severity, code, text, tail in known:
                    issues.append(Issue(severity, code, text, where + tail))
                return
            found = len(issues)
            walk(item, where, ctx)
            if post is not None:
                post(item, where, ctx)
            if key is not None:
                memo.remember(key, _relative(issues[found:], where))  # type: ignore[union-attr]

        if not f.is_array:

            def single(value: Any, obj: dict[str, Any], path: str, ctx: Context) -> None:
                where = f"{path}.{name}"
                if type(value) is dict and value and (len(value) > 1 or "id" not in value):
                    check(value, where, ctx)
                elif type(value) is list:
                    text = "must not be an array"
                    ctx.issues.append(Issue("error", "structure", text, where))
                else:
                    odd(value, where, ctx)

            return single

        def many(value: Any, obj: dict[str, Any], path: str, ctx: Context) -> None:
            prefix = f"{path}.{name}["
            for i, item in enumerate(_array_items(value, f"{path}.{name}", ctx)):
                where = f"{prefix}{i}]"
                if type(item) is dict and item and (len(item) > 1 or "id" not in item):
                    check(item, where, ctx)
                else:
                    odd(item, where, ctx)

        return many

    def _resource_handler(self, f: Field) -> Handler:
        name, contained, resource = f.name, f.name == "contained", self.resource

        def handle(value: Any, obj: dict[str, Any], path: str, ctx: Context) -> None:
            if f.is_array:
                if type(value) is not list or not value:
                    text = "must be a non-empty JSON array"
                    ctx.issues.append(Issue("error", "structure", text, f"{path}.{name}"))
                    return
                for i, item in enumerate(value):
                    resource(item, f"{path}.{name}[{i}]", ctx, contained=contained)
            elif type(value) is list:
                text = "must not be an array"
                ctx.issues.append(Issue("error", "structure", text, f"{path}.{name}"))
            else:
                resource(value, f"{path}.{name}", ctx)

        return handle

    def primitive_extension(
        self, obj: dict[str, Any], struct: Struct, key: str, value: Any, path: str, ctx: Context
    ) -> None:
        """`_name` carries id/extension of primitive `name` (https://hl7.org/fhir/R4/json.html)."""
        f = struct.fields.get(key[1:])
        where = f"{path}.{key[1:]}"
        if f is None or f.kind != PRIMITIVE:
            text = f"unknown element {key!r}"
            ctx.issues.append(Issue("error", "structure", text, f"{path}.{key}"))
            return
        items = value if f.is_array and type(value) is list else [value]
        if f.is_array and type(value) is not list:
            ctx.issues.append(Issue("error", "structure", "must be a JSON array", where))
        values = obj.get(key[1:])
        if (
            f.is_array
            and type(value) is list
            and type(values) is list
            and len(values) != len(value)
        ):
            # the two arrays pair up item by item, null filling the gaps (json.html#primitive)
            text = f"{key} has {len(value)} items, {key[1:]} {len(values)}: they must pair up"
            ctx.issues.append(Issue("error", "structure", text, where))
        for i, item in enumerate(items):
            if item is None and f.is_array:
                continue
            item_path = f"{where}[{i}]" if f.is_array else where
            if type(item) is not dict:
                ctx.issues.append(Issue("error", "structure", "expected a JSON object", item_path))
            elif not item:
                ctx.issues.append(Issue("error", "invariant", ELE_1, item_path))
            else:
                self.walk(item, self.element, item_path, ctx)

    def choice_groups(self, obj: dict[str, Any], struct: Struct, path: str, ctx: Context) -> None:
        """At most one JSON property per choice element (value[x] etc.)."""
        for base, names in struct.choices.items():
            present = [n for n in obj if n in names]
            for extra in present[1:]:
                text = f"only one {base}[x] is allowed"
                ctx.issues.append(Issue("error", "value", text, f"{path}.{extra}"))

    def run_rules(
        self, obj: dict[str, Any], rules: list[CompiledRule], path: str, ctx: Context
    ) -> None:
        for key, severity, human, rule, field_name, guard in rules:
            if field_name is None:
                if guard is not None and guard not in obj:
                    continue
                if not rule(obj, ctx):
                    text = f"{key}: {human}"
                    ctx.issues.append(Issue(severity, "invariant", text, path))  # type: ignore[arg-type]
                continue
            value = obj.get(field_name)
            if value is None:
                continue
            many = type(value) is list
            for i, item in enumerate(value if many else [value]):
                if type(item) is dict and not rule(item, ctx):
                    where = f"{path}.{field_name}[{i}]" if many else f"{path}.{field_name}"
                    text = f"{key}: {human}"
                    ctx.issues.append(Issue(severity, "invariant", text, where))  # type: ignore[arg-type]
