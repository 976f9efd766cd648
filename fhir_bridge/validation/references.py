"""Checks tied to one datatype or resource: Reference format and targets, core extension
value types, and the per-entry Bundle rules (bdl-3, bdl-7).

https://hl7.org/fhir/R4/references.html, https://hl7.org/fhir/R4/extensibility.html,
https://hl7.org/fhir/R4/bundle.html#rules
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from fhir_bridge.domain.issues import Issue

_RELATIVE = re.compile(
    r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?", re.ASCII
).fullmatch
_ABSOLUTE_TAIL = re.compile(
    r".*/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?", re.ASCII
).fullmatch
_UUID = re.compile(
    r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch


class CheckContext(Protocol):
    issues: list[Issue]
    root: dict[str, Any]

    def contained_types(self) -> dict[str, Any]: ...


def check_reference(
    item: dict[str, Any],
    targets: frozenset[str] | None,
    resource_types: frozenset[str],
    path: str,
    ctx: CheckContext,
) -> None:
    """Reference.reference format, and the target type against the allowed targets."""
    ref = item.get("reference")
    target: str | None = None
    if type(ref) is not str:
        pass
    elif ref.startswith("#"):
        found = ctx.contained_types().get(ref[1:])
        target = found if isinstance(found, str) else None
    elif ref.startswith("urn:uuid:"):
        if _UUID(ref) is None:
            text = f"invalid urn:uuid reference {ref!r}"
            ctx.issues.append(Issue("error", "value", text, f"{path}.reference"))
            return
    elif ref.startswith("urn:oid:"):
        return
    elif "://" in ref:
        m = _ABSOLUTE_TAIL(ref)
        if m is not None and m.group(1) in resource_types:
            target = m.group(1)
    else:
        # Conditional references (Type?search) are resolved in transactions.
        m = _RELATIVE(ref.split("?", 1)[0] + "/x" if "?" in ref else ref)
        if m is None or m.group(1) not in resource_types:
            text = f"invalid reference {ref!r}: expected Type/id, absolute URL, urn:uuid: or #id"
            ctx.issues.append(Issue("error", "value", text, f"{path}.reference"))
            return
        target = m.group(1)
    declared = item.get("type")
    if target is None and isinstance(declared, str) and declared in resource_types:
        target = declared
    if target is not None and targets and "Resource" not in targets and target not in targets:
        allowed = ", ".join(sorted(targets))
        text = f"reference to a {target} is not allowed here (allowed: {allowed})"
        ctx.issues.append(Issue("error", "structure", text, f"{path}.reference"))


def check_extension(
    item: dict[str, Any],
    extensions: dict[str, Any],
    value_types: dict[str, str],
    path: str,
    ctx: CheckContext,
) -> None:
    """A known core extension's value must be of a type its definition allows."""
    url = item.get("url")
    spec = extensions.get(url) if isinstance(url, str) else None
    if spec is None:
        return
    allowed = spec["types"]
    for key in item:
        type_code = value_types.get(key)
        if type_code is not None and type_code not in allowed:
            shown = ", ".join(allowed) or "no value (complex extension)"
            text = f"extension {url} does not allow {type_code} (allowed: {shown})"
            ctx.issues.append(Issue("error", "structure", text, f"{path}.{key}"))


def check_bundle(obj: dict[str, Any], path: str, ctx: CheckContext) -> None:
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
        if not isinstance(full_url, str) or kind == "history":
            continue
        resource = entry.get("resource")
        meta = resource.get("meta") if type(resource) is dict else None
        version = meta.get("versionId") if type(meta) is dict else None
        key = (full_url, version if isinstance(version, str) else None)
        if key in seen:
            text = f"bdl-7: fullUrl {full_url!r} must be unique in a Bundle"
            ctx.issues.append(Issue("error", "invariant", text, f"{where}.fullUrl"))
        seen.add(key)
