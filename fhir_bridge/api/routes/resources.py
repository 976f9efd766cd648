"""Type- and instance-level routes: create, read, vread, update, delete, history."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from fhir_bridge.api.deps import (
    RESOURCE_BODY,
    base_url,
    context,
    form_params,
    history_query,
    json_body,
    json_patch_body,
)
from fhir_bridge.api.responses import (
    FHIRResponse,
    prefer_return,
    prefers_strict,
    resource_response,
)
from fhir_bridge.domain.issues import Issue
from fhir_bridge.services import conformance, history, resources, search
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.history import HistoryQuery
from fhir_bridge.store.base import StoredResource

router = APIRouter()

Ctx = Annotated[ServiceContext, Depends(context)]
Base = Annotated[str, Depends(base_url)]
Body = Annotated[Any, Depends(json_body)]
Prefer = Annotated[str | None, Header()]
History = Annotated[HistoryQuery, Depends(history_query)]


async def _supported(resource_type: str) -> str:
    resources.check_type(resource_type)
    return resource_type


Type = Annotated[str, Depends(_supported)]


@router.post("/{resource_type}", status_code=201, openapi_extra=RESOURCE_BODY)
def create(
    resource_type: Type,
    body: Body,
    ctx: Ctx,
    base: Base,
    prefer: Prefer = None,
    if_none_exist: Annotated[str | None, Header()] = None,
) -> Response:
    resources.check_body(body, resource_type)
    stored, created = resources.create(ctx, body, if_none_exist)
    issues = _outcome_issues(ctx, resource_type, stored, prefer)
    status = 201 if created else 200
    return resource_response(stored, base, status, prefer, location=True, issues=issues)


@router.get("/{resource_type}")
def search_type(
    resource_type: Type, request: Request, ctx: Ctx, base: Base, prefer: Prefer = None
) -> Response:
    params = list(request.query_params.multi_items())
    return FHIRResponse(search.search(ctx, base, resource_type, params, prefers_strict(prefer)))


@router.post("/{resource_type}/_search")
def search_type_post(
    resource_type: Type,
    params: Annotated[list[tuple[str, str]], Depends(form_params)],
    ctx: Ctx,
    base: Base,
    prefer: Prefer = None,
) -> Response:
    """POST _search: form-encoded parameters in the body, merged with those of the URL."""
    return FHIRResponse(search.search(ctx, base, resource_type, params, prefers_strict(prefer)))


@router.get("/{resource_type}/_history")
def type_history(
    resource_type: Type,
    ctx: Ctx,
    base: Base,
    query: History,
) -> Response:
    return FHIRResponse(history.history(ctx, base, resource_type, None, query))


@router.get("/{resource_type}/{resource_id}")
def read(resource_type: Type, resource_id: str, ctx: Ctx, base: Base) -> Response:
    return resource_response(resources.read(ctx, resource_type, resource_id), base)


@router.put("/{resource_type}/{resource_id}", openapi_extra=RESOURCE_BODY)
def update(
    resource_type: Type,
    resource_id: str,
    body: Body,
    ctx: Ctx,
    base: Base,
    prefer: Prefer = None,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    resources.check_body(body, resource_type, resource_id)
    stored, created = resources.update(ctx, body, if_match)
    issues = _outcome_issues(ctx, resource_type, stored, prefer)
    status = 201 if created else 200
    return resource_response(stored, base, status, prefer, location=created, issues=issues)


@router.put("/{resource_type}", openapi_extra=RESOURCE_BODY)
def conditional_update(
    resource_type: Type, request: Request, body: Body, ctx: Ctx, base: Base, prefer: Prefer = None
) -> Response:
    resources.check_body(body, resource_type)
    stored, created = resources.conditional_update(ctx, body, _query(request))
    issues = _outcome_issues(ctx, resource_type, stored, prefer)
    status = 201 if created else 200
    return resource_response(stored, base, status, prefer, location=created, issues=issues)


@router.patch("/{resource_type}/{resource_id}")
def patch(
    resource_type: Type,
    resource_id: str,
    operations: Annotated[Any, Depends(json_patch_body)],
    ctx: Ctx,
    base: Base,
    prefer: Prefer = None,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    stored = resources.patch(ctx, resource_type, resource_id, operations, if_match)
    issues = _outcome_issues(ctx, resource_type, stored, prefer)
    return resource_response(stored, base, 200, prefer, issues=issues)


@router.delete("/{resource_type}/{resource_id}")
def delete(
    resource_type: Type,
    resource_id: str,
    ctx: Ctx,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    stored = resources.delete(ctx, resource_type, resource_id, if_match)
    headers = {"ETag": f'W/"{stored.version_id}"'} if stored else {}
    return Response(status_code=204, headers=headers)


@router.delete("/{resource_type}")
def conditional_delete(resource_type: Type, request: Request, ctx: Ctx) -> Response:
    resources.conditional_delete(ctx, resource_type, _query(request))
    return Response(status_code=204)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
def vread(resource_type: Type, resource_id: str, version_id: str, ctx: Ctx, base: Base) -> Response:
    return resource_response(resources.vread(ctx, resource_type, resource_id, version_id), base)


@router.get("/{resource_type}/{resource_id}/_history")
def instance_history(
    resource_type: Type,
    resource_id: str,
    ctx: Ctx,
    base: Base,
    query: History,
) -> Response:
    return FHIRResponse(history.history(ctx, base, resource_type, resource_id, query))


def _query(request: Request) -> str:
    """The conditional-operation criteria: the query string without result parameters."""
    return str(request.url.query)


def _outcome_issues(
    ctx: ServiceContext, resource_type: str, stored: StoredResource, prefer: str | None
) -> list[Issue] | None:
    """The warnings of a successful write, for `Prefer: return=OperationOutcome` only (they
    are found again rather than carried through every write): those of the version stored,
    which has its id, so that rules over the store do not count it twice."""
    if prefer_return(prefer) != "OperationOutcome":
        return None
    return conformance.validate(ctx, resource_type, orjson.loads(stored.data))
