"""The instance and type interactions of the FHIR REST API on single resources.

https://hl7.org/fhir/R4/http.html — create, read, vread, update, delete, conditional variants.
Every function takes a ServiceContext and a plain resource dict; the store does the SQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from secrets import randbits
from typing import Any

import orjson

from fhir_bridge.domain import fhir_json
from fhir_bridge.domain.fhir import is_supported, parse_uint
from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.memo import SharedKeys
from fhir_bridge.errors import (
    InvalidRequestError,
    PreconditionFailedError,
    ResourceGoneError,
    ResourceNotFoundError,
    UnprocessableResourceError,
    VersionConflictError,
)
from fhir_bridge.services import cohort
from fhir_bridge.services.context import RecordRule, ServiceContext
from fhir_bridge.services.local_references import LocalTargets
from fhir_bridge.services.patch import apply_patch
from fhir_bridge.store import search as store_search
from fhir_bridge.store.base import Staged, StoredResource, StoreSession

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def check_type(resource_type: str) -> None:
    """Refuse resource types this server does not serve (404 not-supported)."""
    if not is_supported(resource_type):
        # https://hl7.org/fhir/R4/http.html#general: an unsupported type is 404
        raise ResourceNotFoundError(
            f"Resource type '{resource_type}' is not supported by this server",
            code="not-supported",
        )


def valid_id(text: str) -> bool:
    """The R4 id rule (https://hl7.org/fhir/R4/datatypes.html#id) less `.` and `..`, which the
    path of a URL reads as the folder itself or its parent."""
    return ID_PATTERN.fullmatch(text) is not None and text not in (".", "..")


def check_id(resource_id: str, expression: str | None = None) -> None:
    """A 400 naming `expression` (the element that carries the id) for an invalid id."""
    if not valid_id(resource_id):
        raise InvalidRequestError(
            f"'{resource_id}' is not a valid FHIR id: 1-64 of A-Z a-z 0-9 - . and not . or ..",
            code="value",
            expression=expression,
        )


def known_id(resource_type: str, resource_id: str) -> None:
    """An id that is not a valid FHIR id names nothing this server holds: 404."""
    if not valid_id(resource_id):
        raise ResourceNotFoundError(f"{resource_type}/{resource_id} is not known")


def check_body(resource: Any, resource_type: str, resource_id: str | None = None) -> None:
    """The body is a resource of the URL's type and, for update, carries the URL's id."""
    if not isinstance(resource, dict):
        raise InvalidRequestError("The request body must be a JSON object", code="structure")
    body_type = resource.get("resourceType")
    if body_type is None:
        raise InvalidRequestError(
            "The resource has no resourceType", code="required", expression="resourceType"
        )
    if body_type != resource_type:
        raise InvalidRequestError(
            f"resourceType '{body_type}' does not match the URL type '{resource_type}'",
            expression="resourceType",
        )
    if "id" in resource and not isinstance(resource["id"], str):
        raise InvalidRequestError(
            "id must be a string", code="value", expression=f"{resource_type}.id"
        )
    if resource_id is not None:
        if "id" not in resource:
            raise InvalidRequestError(
                "An update must carry the id of the URL",
                code="required",
                expression=f"{resource_type}.id",
            )
        if resource["id"] != resource_id:
            raise InvalidRequestError(
                f"id '{resource['id']}' does not match the URL id '{resource_id}'",
                expression=f"{resource_type}.id",
            )


def check(
    ctx: ServiceContext, resource: dict[str, Any], profiles: Sequence[str] = ()
) -> list[Issue]:
    """Every issue the validator and the rules find; https://hl7.org/fhir/R4/validation.html.

    The rules read resources of the right shape: on one the validator found malformed, a rule
    that cannot read it adds nothing (the validator's errors already refuse it)."""
    issues = list(ctx.validator(resource, profiles))
    malformed = any(issue.is_error for issue in issues)
    for rule in ctx.rules:
        try:
            issues.extend(rule(resource))
        except (AttributeError, KeyError, TypeError, ValueError):
            if not malformed:
                raise
    return issues


def validate_for_write(ctx: ServiceContext, resource: dict[str, Any]) -> list[Issue]:
    """Errors refuse the write (422); warnings are returned."""
    issues = check(ctx, resource)
    if any(issue.is_error for issue in issues):
        raise UnprocessableResourceError(issues=[i for i in issues if i.severity != "information"])
    return issues


def new_id() -> str:
    """A UUIDv7 (RFC 9562 section 5.7, sub-millisecond clock in rand_a): ids a server assigns
    sort by creation time, so new rows append to the id-keyed indexes instead of landing on
    random pages."""
    ms, sub = divmod(time.time_ns(), 1_000_000)
    value = (ms << 80) | (7 << 76) | (sub * 4096 // 1_000_000) << 64 | 2 << 62 | randbits(62)
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A resource that passed every check, with what derives from it, each with its search
    index rows; no database touched."""

    resource: dict[str, Any]
    staged: Staged
    derived: list[tuple[dict[str, Any], Staged]]
    record_rules: Sequence[RecordRule] = ()


def prepare(
    ctx: ServiceContext, resource: dict[str, Any], derive: bool = True, plain: bool = False
) -> Prepared:
    """Transform, check, derive and index: the CPU work of a write, done before the write lock.
    `derive=False` when the client sends the derived resources itself; `plain` when the
    resource is as parsed from a body for which ctx.plain_body holds (not, say, a patched
    stored version, which may hold nulls and local references)."""
    for transform in ctx.transforms:
        resource = transform(resource)
    with SharedKeys(plain):  # nothing below changes the resource
        validate_for_write(ctx, resource)
        derived = [item for rule in ctx.derivations if derive for item in rule(resource)]
    for item in derived:  # made here, not parsed from the request
        with SharedKeys():
            validate_for_write(ctx, item)
    stage = ctx.store.stage
    staged = [(item, stage(item)) for item in derived]
    return Prepared(resource, stage(resource), staged, ctx.record_rules)


def check_records(
    rules: Sequence[RecordRule], session: StoreSession, resource: dict[str, Any]
) -> tuple[list[Issue], list[dict[str, str]]]:
    """The issues and data-quality tags of the record rules for `resource` in `session`."""
    issues: list[Issue] = []
    tags: list[dict[str, str]] = []
    for rule in rules:
        found = rule(session, resource)
        issues += found.issues
        tags += found.tags
    return issues, tags


def _tagged(resource: dict[str, Any], tags: list[dict[str, str]]) -> dict[str, Any]:
    found = resource.get("meta")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    old = [t for t in meta.get("tag", []) if t not in tags]
    return {**resource, "meta": {**meta, "tag": [*old, *tags]}}


def local_targets(ctx: ServiceContext, session: StoreSession) -> LocalTargets | None:
    """What the local references of a write in `session` may name; None when not checked."""
    return LocalTargets(session) if ctx.check_references else None


def commit(
    session: StoreSession,
    prepared: Prepared,
    method: str,
    new: bool = False,
    targets: LocalTargets | None = None,
) -> StoredResource:
    """Store a prepared resource and its derived resources in the caller's session;
    `new` when the resource's id is a fresh uuid. With `targets`, its local references must
    name one of them (derived resources name what their source names, or the source). The
    record rules run here, in the session: an error refuses the write (the session rolls
    back), a tag marks the stored resource."""
    if targets is not None:
        targets.check(prepared.staged, prepared.resource)
    issues, tags = check_records(prepared.record_rules, session, prepared.resource)
    if any(issue.is_error for issue in issues):
        raise UnprocessableResourceError(issues=[i for i in issues if i.severity != "information"])
    if tags:  # staged without them: staged again, by the store
        stored = session.put(_tagged(prepared.resource, tags), method, new)
    else:
        stored = session.put(prepared.resource, method, new, prepared.staged)
    if stored.resource_type == "ResearchSubject":
        cohort.update(session, prepared.resource)
    source = f"{stored.resource_type}/{stored.id}"
    for item, staged in prepared.derived:
        issues, tags = check_records(prepared.record_rules, session, item)
        if any(issue.is_error for issue in issues):
            errors = [issue for issue in derived_issues(item, issues) if issue.is_error]
            raise UnprocessableResourceError(issues=errors)
        written: Staged | None = staged
        if tags:  # staged without them: staged again, by the store
            item, written = _tagged(item, tags), None
        existing = session.read(item["resourceType"], item["id"])
        if existing is None or existing.deleted:
            session.put(item, "POST", staged=written)
            continue
        if not _derives_from(orjson.loads(existing.data), source):
            raise VersionConflictError(
                f"{item['resourceType']}/{item['id']} exists and is not derived from {source}"
            )
        session.put(item, "PUT", staged=written)
    return stored


def derived_issues(derived: dict[str, Any], issues: list[Issue]) -> list[Issue]:
    """Issues of a resource the server derives (a score Observation), said as such: their
    paths are not in the submitted resource, so they go into the text; an error stays an
    error (the write is refused), the rest is information about what the server makes."""
    kind = derived.get("resourceType")
    return [
        Issue(
            issue.severity if issue.is_error else "information",
            issue.code,
            f"In the {kind} the server derives from this resource"
            + (f", at {issue.expression}" if issue.expression else "")
            + f": {issue.diagnostics}",
        )
        for issue in issues
    ]


def _derives_from(resource: dict[str, Any], source: str) -> bool:
    refs = resource.get("derivedFrom") or []
    return any(isinstance(r, dict) and r.get("reference") == source for r in refs)


def single_match(
    session: StoreSession, resource_type: str, query: str, expression: str | None = None
) -> str | None:
    """The id of the one resource a condition matches, None for none; several are a 412.

    https://hl7.org/fhir/R4/http.html#ccreate — the rule of every conditional interaction."""
    matches = store_search.find_ids(session.execute, resource_type, query)
    if len(matches) > 1:
        raise PreconditionFailedError(
            f"The condition '{query}' matched {len(matches)} resources",
            code="multiple-matches",
            expression=expression,
        )
    return matches[0] if matches else None


def _conditional_match(
    session: StoreSession, resource_type: str, if_none_exist: str
) -> StoredResource | None:
    match = single_match(session, resource_type, if_none_exist)
    return session.read(resource_type, match) if match else None


def create(
    ctx: ServiceContext, resource: dict[str, Any], if_none_exist: str | None = None
) -> tuple[StoredResource, bool]:
    """https://hl7.org/fhir/R4/http.html#create — checks run before the write lock is taken."""
    prepared = prepare(ctx, {**resource, "id": new_id()})
    with ctx.store.session(write=True) as session:
        if if_none_exist:
            existing = _conditional_match(session, resource["resourceType"], if_none_exist)
            if existing is not None:
                return existing, False
        return commit(session, prepared, "POST", True, local_targets(ctx, session)), True


def read(ctx: ServiceContext, resource_type: str, resource_id: str) -> StoredResource:
    """https://hl7.org/fhir/R4/http.html#read — a deleted resource is 410 Gone."""
    known_id(resource_type, resource_id)
    with ctx.store.session() as session:
        stored = session.read(resource_type, resource_id)
    return live(stored, resource_type, resource_id)


def live(stored: StoredResource | None, resource_type: str, resource_id: str) -> StoredResource:
    if stored is None:
        raise ResourceNotFoundError(f"{resource_type}/{resource_id} is not known")
    if stored.deleted:
        raise ResourceGoneError(f"{resource_type}/{resource_id} has been deleted")
    return stored


def vread(
    ctx: ServiceContext, resource_type: str, resource_id: str, version: str
) -> StoredResource:
    """https://hl7.org/fhir/R4/http.html#vread"""
    with ctx.store.session() as session:
        return vread_in(session, resource_type, resource_id, version)


def vread_in(
    session: StoreSession, resource_type: str, resource_id: str, version: str
) -> StoredResource:
    """A version of a resource in an open session; a deletion version reads as 410."""
    known_id(resource_type, resource_id)
    number = parse_uint(version)
    stored = session.vread(resource_type, resource_id, number) if number is not None else None
    if stored is None:
        if session.read(resource_type, resource_id) is None:
            raise ResourceNotFoundError(f"{resource_type}/{resource_id} is not known")
        raise ResourceNotFoundError(f"{resource_type}/{resource_id} has no version {version}")
    if stored.deleted:
        raise ResourceGoneError(f"Version {version} of {resource_type}/{resource_id} is a deletion")
    return stored


def parse_if_match(if_match: Any) -> int:
    """`W/"3"` or `"3"` or `3` → 3; anything else is a 400."""
    value = str(if_match).strip()
    if value.startswith("W/"):
        value = value[2:]
    version = parse_uint(value.strip('"'))
    if version is None:
        raise InvalidRequestError(f"If-Match '{if_match}' is not a version ETag", code="value")
    return version


def check_version(
    current: StoredResource | None, if_match: str | None, resource_type: str, resource_id: str
) -> None:
    """https://hl7.org/fhir/R4/http.html#concurrency — with If-Match, only the version it names
    may change (412 otherwise)."""
    if if_match is None:
        return
    expected = parse_if_match(if_match)
    if current is None or current.deleted or current.version_id != expected:
        have = (
            "no live version"
            if current is None or current.deleted
            else (f"version {current.version_id}")
        )
        raise PreconditionFailedError(
            f"If-Match expected version {expected} of {resource_type}/{resource_id} "
            f"but the server has {have}"
        )


def update_in(
    ctx: ServiceContext,
    session: StoreSession,
    resource: dict[str, Any],
    if_match: str | None = None,
    prepared: Prepared | None = None,
    method: str = "PUT",
    targets: LocalTargets | None = None,
) -> tuple[StoredResource, bool]:
    """Update (or create with the client's id) inside an open write session; `method` (PUT or
    PATCH) is recorded as the interaction that made the version. `targets`: what its local
    references may name, when a transaction has them (else looked up here)."""
    resource_type, resource_id = resource["resourceType"], resource["id"]
    check_id(resource_id, f"{resource_type}.id")
    current = session.read(resource_type, resource_id)
    check_version(current, if_match, resource_type, resource_id)
    created = current is None or current.deleted
    if current is not None and not current.deleted:
        check_transition(ctx, orjson.loads(current.data), resource)
    prepared = prepared or prepare(ctx, resource)
    targets = targets or local_targets(ctx, session)
    return commit(session, prepared, method, targets=targets), created


def check_transition(
    ctx: ServiceContext, current: dict[str, Any], resource: dict[str, Any]
) -> None:
    issues = [
        issue
        for rule in ctx.transitions.get(resource["resourceType"], ())
        for issue in rule(current, resource)
    ]
    if any(issue.is_error for issue in issues):
        raise UnprocessableResourceError(issues=issues)


def update(
    ctx: ServiceContext, resource: dict[str, Any], if_match: str | None = None
) -> tuple[StoredResource, bool]:
    """https://hl7.org/fhir/R4/http.html#update — update as create when the id is new."""
    check_id(resource["id"], f"{resource['resourceType']}.id")
    prepared = prepare(ctx, resource)
    with ctx.store.session(write=True) as session:
        return update_in(ctx, session, resource, if_match, prepared)


def conditional_update(
    ctx: ServiceContext, resource: dict[str, Any], query: str
) -> tuple[StoredResource, bool]:
    """https://hl7.org/fhir/R4/http.html#cond-update"""
    resource_type = resource["resourceType"]
    with ctx.store.session(write=True) as session:
        match = single_match(session, resource_type, query)
        if match:
            if "id" in resource and resource["id"] != match:
                raise InvalidRequestError(
                    "The body id differs from the resource the condition matched",
                    expression=f"{resource_type}.id",
                )
            return update_in(ctx, session, {**resource, "id": match})
        if "id" in resource:
            return update_in(ctx, session, resource)
        prepared = prepare(ctx, {**resource, "id": new_id()})
        return commit(session, prepared, "POST", True, local_targets(ctx, session)), True


def delete_in(
    session: StoreSession, resource_type: str, resource_id: str, if_match: str | None = None
) -> StoredResource | None:
    """Delete inside an open write session; deleting nothing is not an error (spec: 200/204)."""
    current = session.read(resource_type, resource_id)
    check_version(current, if_match, resource_type, resource_id)
    if current is None or current.deleted:
        return None
    if resource_type == "ResearchSubject":
        cohort.update(session, orjson.loads(current.data), removed=True)
    return session.delete(resource_type, resource_id)


def delete(
    ctx: ServiceContext, resource_type: str, resource_id: str, if_match: str | None = None
) -> StoredResource | None:
    """https://hl7.org/fhir/R4/http.html#delete"""
    known_id(resource_type, resource_id)
    with ctx.store.session(write=True) as session:
        return delete_in(session, resource_type, resource_id, if_match)


def conditional_delete(ctx: ServiceContext, resource_type: str, query: str) -> int:
    """https://hl7.org/fhir/R4/http.html#cdelete — single match only (multiple: 412)."""
    with ctx.store.session(write=True) as session:
        match = single_match(session, resource_type, query)
        if match:
            delete_in(session, resource_type, match)
        return 1 if match else 0


def patch(
    ctx: ServiceContext,
    resource_type: str,
    resource_id: str,
    operations: Any,
    if_match: str | None = None,
) -> StoredResource:
    """https://hl7.org/fhir/R4/http.html#patch — JSON Patch on the current version.

    The patch is applied and its result checked before the write lock; under it, the patch is
    applied again (its cost is bounded) only if another write came between."""
    with ctx.store.session() as session:
        current = live(session.read(resource_type, resource_id), resource_type, resource_id)
    check_version(current, if_match, resource_type, resource_id)
    patched = apply_patch(fhir_json.loads(current.data), operations, ctx.limits)
    prepared: Prepared | None = prepare(ctx, patched)
    with ctx.store.session(write=True) as session:
        latest = live(session.read(resource_type, resource_id), resource_type, resource_id)
        if latest.version_id != current.version_id:
            patched = apply_patch(fhir_json.loads(latest.data), operations, ctx.limits)
            prepared = None
        stored, _ = update_in(ctx, session, patched, if_match, prepared, method="PATCH")
        return stored
