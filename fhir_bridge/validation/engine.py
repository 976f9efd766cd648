"""The structural walk: one pass over a resource dict against the compiled base definitions.

Checks unknown elements, JSON shape and cardinality, primitive formats, `_element` primitive
extensions, choice types, bindings, references, core extensions, contained resources and the
core invariants (https://hl7.org/fhir/R4/validation.html).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.validation.compiler import COMPLEX, PRIMITIVE, Compiler, Field, Struct
from fhir_bridge.validation.definitions import load_definitions
from fhir_bridge.validation.invariants import Rule, compile_rule
from fhir_bridge.validation.terminology import Terminology

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII).fullmatch
_RELATIVE = re.compile(
    r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?", re.ASCII
).fullmatch
_ABSOLUTE_TAIL = re.compile(
    r".*/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?", re.ASCII
).fullmatch
_UUID = re.compile(
    r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch
# Checked by the engine with element paths instead of by the generic invariant runner.
ENGINE_RULES = frozenset({"bdl-3", "bdl-7"})


class Context:
    """Per-call state: the issues found, the current resource (%resource) and %rootResource."""

    __slots__ = ("issues", "resource", "root", "top", "profiles")

    def __init__(self, top: Any = None, profiles: Sequence[str] = ()) -> None:
        self.issues: list[Issue] = []
        self.resource: dict[str, Any] = {}
        self.root: dict[str, Any] = {}
        self.top = top
        self.profiles = profiles


CompiledRule = tuple[str, str, str, Rule, str | None]
ResourceHook = Callable[[dict[str, Any], str, Context], None]


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
        self.rules: dict[str, list[CompiledRule]] = {}
        self.resource_hook: ResourceHook | None = None
        for struct in self.structs.values():
            if struct.is_resource and "id" in struct.fields:
                struct.fields["id"].check = compiler.checkers["id"]
        for key, struct in self.structs.items():
            self.rules[key] = self.compile_rules(struct)

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
                compiled.append((c.key, c.severity, c.human, rule, c.field))
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
            self.bundle(obj, path, ctx)
        if self.resource_hook is not None:
            self.resource_hook(obj, path, ctx)
        ctx.resource, ctx.root = saved

    def walk(self, obj: dict[str, Any], struct: Struct, path: str, ctx: Context) -> None:
        """Check one element object against its Struct, recursing into complex children."""
        issues = ctx.issues
        fields = struct.fields
        choices: list[Field] | None = None
        for key, value in obj.items():
            f = fields.get(key)
            if f is None:
                if key[0] == "_":
                    self.primitive_extension(obj, struct, key, value, path, ctx)
                elif key != "resourceType" or not struct.is_resource:
                    issues.append(
                        Issue("error", "structure", f"unknown element {key!r}", f"{path}.{key}")
                    )
                continue
            if f.choice is not None:
                if choices is None:
                    choices = [f]
                else:
                    choices.append(f)
            if f.is_array:
                if type(value) is not list:
                    issues.append(
                        Issue("error", "structure", "must be a JSON array", f"{path}.{key}")
                    )
                    value = [value]
                elif not value:
                    issues.append(
                        Issue("error", "structure", "arrays must not be empty", f"{path}.{key}")
                    )
                    continue
                if f.kind == PRIMITIVE:
                    check = f.check
                    for i, item in enumerate(value):
                        if item is None:
                            if not self._has_extension_at(obj, key, i):
                                text = "null is only allowed with a matching _ extension entry"
                                issues.append(
                                    Issue("error", "structure", text, f"{path}.{key}[{i}]")
                                )
                            continue
                        msg = check(item)  # type: ignore[misc]
                        if msg is not None:
                            issues.append(Issue("error", "value", msg, f"{path}.{key}[{i}]"))
                        elif f.binding is not None:
                            self.bound(item, f, f"{path}.{key}[{i}]", ctx)
                elif f.kind == COMPLEX:
                    sub = self.structs[f.struct]  # type: ignore[index]
                    for i, item in enumerate(value):
                        self.complex(item, f, sub, f"{path}.{key}[{i}]", ctx)
                else:
                    for i, item in enumerate(value):
                        self.resource(item, f"{path}.{key}[{i}]", ctx, contained=key == "contained")
            else:
                if type(value) is list:
                    issues.append(
                        Issue("error", "structure", "must not be an array", f"{path}.{key}")
                    )
                    continue
                if f.kind == PRIMITIVE:
                    msg = f.check(value)  # type: ignore[misc]
                    if msg is not None:
                        issues.append(Issue("error", "value", msg, f"{path}.{key}"))
                    elif f.binding is not None:
                        self.bound(value, f, f"{path}.{key}", ctx)
                elif f.kind == COMPLEX:
                    self.complex(value, f, self.structs[f.struct], f"{path}.{key}", ctx)  # type: ignore[index]
                else:
                    self.resource(value, f"{path}.{key}", ctx)
        for name, keys in struct.required:
            for k in keys:
                if k in obj:
                    break
            else:
                text = f"minimum required = 1, but only found 0 ({struct.key}.{name})"
                issues.append(Issue("error", "required", text, f"{path}.{name}"))
        if choices is not None and len(choices) > 1:
            self.choice_groups(choices, path, ctx)
        rules = self.rules[struct.key]
        if rules:
            self.run_rules(obj, rules, path, ctx)

    def complex(self, item: Any, f: Field, sub: Struct, path: str, ctx: Context) -> None:
        if type(item) is not dict:
            text = f"expected a JSON object for {f.type_code}"
            ctx.issues.append(Issue("error", "structure", text, path))
            return
        if not item or (len(item) == 1 and "id" in item):
            text = "ele-1: All FHIR elements must have a @value or children"
            ctx.issues.append(Issue("error", "invariant", text, path))
            return
        self.walk(item, sub, path, ctx)
        tc = f.type_code
        if tc == "Reference":
            self.reference(item, f.targets, path, ctx)
        elif tc == "Extension":
            self.extension(item, path, ctx)
        if f.binding is not None:
            self.bound(item, f, path, ctx)

    def bound(self, value: Any, f: Field, path: str, ctx: Context) -> None:
        issue = self.terminology.check(value, f.type_code, f.binding, path)  # type: ignore[arg-type]
        if issue is not None:
            ctx.issues.append(issue)

    def primitive_extension(
        self, obj: dict[str, Any], struct: Struct, key: str, value: Any, path: str, ctx: Context
    ) -> None:
        """`_name` carries id/extension of primitive `name` (https://hl7.org/fhir/R4/json.html)."""
        f = struct.fields.get(key[1:])
        where = f"{path}.{key[1:]}"
        if f is None or f.kind != PRIMITIVE:
            ctx.issues.append(
                Issue("error", "structure", f"unknown element {key!r}", f"{path}.{key}")
            )
            return
        items = value if f.is_array and type(value) is list else [value]
        if f.is_array and type(value) is not list:
            ctx.issues.append(Issue("error", "structure", "must be a JSON array", where))
        for i, item in enumerate(items):
            if item is None and f.is_array:
                continue
            item_path = f"{where}[{i}]" if f.is_array else where
            if type(item) is not dict:
                ctx.issues.append(Issue("error", "structure", "expected a JSON object", item_path))
            elif not item:
                text = "ele-1: All FHIR elements must have a @value or children"
                ctx.issues.append(Issue("error", "invariant", text, item_path))
            else:
                self.walk(item, self.element, item_path, ctx)

    @staticmethod
    def _has_extension_at(obj: dict[str, Any], key: str, i: int) -> bool:
        ext = obj.get("_" + key)
        return type(ext) is list and i < len(ext) and isinstance(ext[i], dict)

    def choice_groups(self, choices: list[Field], path: str, ctx: Context) -> None:
        seen: set[str] = set()
        for f in choices:
            if f.choice in seen:
                text = f"only one {f.choice}[x] is allowed"
                ctx.issues.append(Issue("error", "value", text, f"{path}.{f.name}"))
            seen.add(f.choice)  # type: ignore[arg-type]

    def run_rules(
        self, obj: dict[str, Any], rules: list[CompiledRule], path: str, ctx: Context
    ) -> None:
        for key, severity, human, rule, field_name in rules:
            if field_name is None:
                if not rule(obj, ctx):
                    ctx.issues.append(Issue(severity, "invariant", f"{key}: {human}", path))  # type: ignore[arg-type]
                continue
            value = obj.get(field_name)
            if value is None:
                continue
            items = value if type(value) is list else [value]
            for i, item in enumerate(items):
                if type(item) is dict and not rule(item, ctx):
                    where = (
                        f"{path}.{field_name}[{i}]"
                        if type(value) is list
                        else f"{path}.{field_name}"
                    )
                    ctx.issues.append(Issue(severity, "invariant", f"{key}: {human}", where))  # type: ignore[arg-type]

    def reference(
        self, item: dict[str, Any], targets: frozenset[str] | None, path: str, ctx: Context
    ) -> None:
        """Reference format and target type (https://hl7.org/fhir/R4/references.html)."""
        ref = item.get("reference")
        target: str | None = None
        if type(ref) is not str:
            pass
        elif ref.startswith("#"):
            for c in ctx.root.get("contained", ()):
                if isinstance(c, dict) and c.get("id") == ref[1:]:
                    target = c.get("resourceType")
        elif ref.startswith("urn:uuid:"):
            if _UUID(ref) is None:
                ctx.issues.append(
                    Issue(
                        "error", "value", f"invalid urn:uuid reference {ref!r}", f"{path}.reference"
                    )
                )
                return
        elif ref.startswith("urn:oid:"):
            return
        elif "://" in ref:
            m = _ABSOLUTE_TAIL(ref)
            if m is not None and m.group(1) in self.resource_types:
                target = m.group(1)
        else:
            m = _RELATIVE(ref.split("?", 1)[0] + "/x" if "?" in ref else ref)
            if m is None or m.group(1) not in self.resource_types:
                text = (
                    f"invalid reference {ref!r}: expected Type/id, absolute URL, urn:uuid: or #id"
                )
                ctx.issues.append(Issue("error", "value", text, f"{path}.reference"))
                return
            target = m.group(1)
        declared = item.get("type")
        if target is None and isinstance(declared, str) and declared in self.resource_types:
            target = declared
        if target is not None and targets and "Resource" not in targets and target not in targets:
            allowed = ", ".join(sorted(targets))
            text = f"reference to a {target} is not allowed here (allowed: {allowed})"
            ctx.issues.append(Issue("error", "structure", text, f"{path}.reference"))

    def extension(self, item: dict[str, Any], path: str, ctx: Context) -> None:
        """Known core extensions: value type must be one their definition allows."""
        spec = self.extensions.get(item.get("url"))  # type: ignore[arg-type]
        if spec is None:
            return
        allowed = spec["types"]
        for key in item:
            type_code = self.extension_types.get(key)
            if type_code is None:
                continue
            if type_code not in allowed:
                shown = ", ".join(allowed) or "no value (complex extension)"
                text = f"extension {item['url']} does not allow {type_code} (allowed: {shown})"
                ctx.issues.append(Issue("error", "structure", text, f"{path}.{key}"))

    def bundle(self, obj: dict[str, Any], path: str, ctx: Context) -> None:
        """bdl-3 (entry.request for batch/transaction) and bdl-7 (fullUrl unique), per entry."""
        kind = obj.get("type")
        entries = obj.get("entry")
        if type(entries) is not list:
            return
        wants_request = kind in ("batch", "transaction", "history")
        seen: set[tuple[Any, Any]] = set()
        for i, entry in enumerate(entries):
            if type(entry) is not dict:
                continue
            where = f"{path}.entry[{i}]"
            if wants_request and "request" not in entry:
                text = f"bdl-3: entry.request is mandatory in a {kind} Bundle"
                ctx.issues.append(Issue("error", "required", text, f"{where}.request"))
            elif not wants_request and "request" in entry:
                text = f"bdl-3: entry.request is not allowed in a {kind} Bundle"
                ctx.issues.append(Issue("error", "invariant", text, f"{where}.request"))
            full_url = entry.get("fullUrl")
            if full_url is None or kind == "history":
                continue
            resource = entry.get("resource")
            meta = resource.get("meta") if type(resource) is dict else None
            key = (full_url, meta.get("versionId") if type(meta) is dict else None)
            if key in seen:
                text = f"bdl-7: fullUrl {full_url!r} must be unique in a Bundle"
                ctx.issues.append(Issue("error", "invariant", text, f"{where}.fullUrl"))
            seen.add(key)
