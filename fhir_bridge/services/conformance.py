"""$validate and the publication of the project's conformance resources.

https://hl7.org/fhir/R4/resource-operation-validate.html — the answer is an OperationOutcome
listing every issue; it is 200 whether or not the resource is valid (the operation worked).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import FHIRBridgeError, InvalidRequestError
from fhir_bridge.services import resources
from fhir_bridge.services.context import ServiceContext

VALIDATE_MODES = ("create", "update", "delete", "profile")  # ResourceValidationMode


def validate(
    ctx: ServiceContext,
    resource_type: str,
    body: Any,
    resource_id: str | None = None,
    url_profiles: Sequence[str] = (),
    url_mode: str | None = None,
) -> list[Issue]:
    """Issues for a resource (or a Parameters with `resource`, `mode`, `profile`) as a write of
    it would find them: local codes translated, validator and clinical rules, scoring.
    `profile` and `mode` may also come from the URL."""
    resource, mode, profiles = _arguments(body, resource_type)
    profiles = [*profiles, *url_profiles]
    if url_mode is not None:
        mode = _mode(url_mode, "mode")
    if mode == "delete":
        return []
    if mode == "profile" and not profiles:
        return [Issue("error", "required", "mode=profile needs a profile", "profile")]
    if mode == "update" and resource_id is None and "id" not in resource:
        return [
            Issue("error", "required", "mode=update needs a resource id", f"{resource_type}.id")
        ]
    for transform in ctx.transforms:
        resource = transform(resource)
    issues = resources.check(ctx, resource, profiles)
    if not any(issue.is_error for issue in issues):
        issues += _record_issues(ctx, resource)
    if mode == "update":  # as an update of the resource named would be checked
        issues += _update_issues(ctx, resource_type, resource, resource_id)
    if not any(issue.is_error for issue in issues):
        with_id = {**resource, "id": resource.get("id") or resource_id or "validate"}
        for derive in ctx.derivations:
            try:
                for derived in derive(with_id):
                    found = resources.check(ctx, derived) + _record_issues(ctx, derived)
                    issues.extend(resources.derived_issues(derived, found))
            except FHIRBridgeError as exc:  # the derivation read the resource: its issues
                issues.extend(exc.issues)
    return issues


def _record_issues(ctx: ServiceContext, resource: dict[str, Any]) -> list[Issue]:
    """What the record rules would find if `resource` were written now."""
    if not ctx.record_rules:
        return []
    with ctx.store.session() as session:
        return resources.check_records(ctx.record_rules, session, resource)[0]


def _update_issues(
    ctx: ServiceContext, resource_type: str, resource: dict[str, Any], resource_id: str | None
) -> list[Issue]:
    """What an update of `resource_id` (default: the body's id) would refuse besides the
    resource's own checks: an id other than the URL's, a change the transition rules forbid."""
    body_id = resource.get("id")
    try:
        if resource_id and body_id:
            resources.check_body(resource, resource_type, resource_id)  # as PUT checks it
        target = resource_id or body_id
        with ctx.store.session() as session:
            current = session.read(resource_type, target) if isinstance(target, str) else None
        if current is not None and not current.deleted:
            resources.check_transition(ctx, orjson.loads(current.data), resource)
    except FHIRBridgeError as exc:
        return exc.issues
    return []


def _mode(value: Any, expression: str) -> str:
    if value not in VALIDATE_MODES:
        raise InvalidRequestError(
            f"mode must be one of {', '.join(VALIDATE_MODES)}", expression=expression
        )
    return str(value)


def _arguments(body: Any, resource_type: str) -> tuple[dict[str, Any], str, list[str]]:
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object", code="structure")
    if body.get("resourceType") != "Parameters":
        resources.check_body(body, resource_type)
        return body, "create", []
    resource: dict[str, Any] | None = None
    mode, profiles = "create", []
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list):
        raise InvalidRequestError(
            "Parameters.parameter must be an array", expression="Parameters.parameter"
        )
    for index, parameter in enumerate(parameters):
        name = parameter.get("name") if isinstance(parameter, dict) else None
        where = f"Parameters.parameter[{index}]"
        if name == "resource":
            resource = parameter.get("resource")
        elif name == "mode":
            value = parameter.get("valueCode") or parameter.get("valueString")
            mode = _mode(value, f"{where}.valueCode")
        elif name == "profile":
            profile = parameter.get("valueUri") or parameter.get("valueCanonical")
            if not isinstance(profile, str):
                raise InvalidRequestError(
                    "profile needs a valueUri", expression=f"{where}.valueUri"
                )
            profiles.append(profile)
        else:
            raise InvalidRequestError(f"Unknown parameter '{name}'", expression=f"{where}.name")
    if resource is None:
        if mode == "delete":
            return {"resourceType": resource_type}, mode, profiles
        raise InvalidRequestError(
            "Parameters needs a 'resource' parameter",
            code="required",
            expression="Parameters.parameter",
        )
    resources.check_body(resource, resource_type)
    return resource, mode, profiles


def publish(ctx: ServiceContext, conformance: list[dict[str, Any]]) -> int:
    """Store the project's conformance resources under their own ids, writing a new version only
    when the content changed (so restarts do not grow history). Returns how many were written."""
    written = 0
    with ctx.store.session(write=True) as session:
        for resource in conformance:
            current = session.read(resource["resourceType"], resource["id"])
            if current is not None and not current.deleted:
                stored = orjson.loads(current.data)
                stored.pop("meta", None)
                if stored == {k: v for k, v in resource.items() if k != "meta"}:
                    continue
            session.put(resource, "PUT" if current else "POST")
            written += 1
    return written
