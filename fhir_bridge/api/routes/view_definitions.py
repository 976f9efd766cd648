"""ViewDefinition routes: create, read, vread, update, delete, history and search of the SQL on
FHIR v2 ViewDefinitions this server keeps (services/view_definitions.py says how and why).

Included before the generic resource routes, which serve R4 types only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from fhir_bridge.api.deps import RESOURCE_BODY, base_url, context, history_query, json_body
from fhir_bridge.api.responses import FHIRResponse, prefers_strict, resource_response
from fhir_bridge.services import history, view_definitions
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.history import HistoryQuery
from fhir_bridge.services.resources import check_body

router = APIRouter()

Ctx = Annotated[ServiceContext, Depends(context)]
Base = Annotated[str, Depends(base_url)]
Body = Annotated[Any, Depends(json_body)]
Prefer = Annotated[str | None, Header()]
IfMatch = Annotated[str | None, Header()]
TYPE = view_definitions.TYPE


@router.post("/ViewDefinition", status_code=201, openapi_extra=RESOURCE_BODY)
def create(body: Body, ctx: Ctx, base: Base, prefer: Prefer = None) -> Response:
    check_body(body, TYPE)
    stored = view_definitions.create(ctx, body)
    return resource_response(stored, base, 201, prefer, location=True)


@router.get("/ViewDefinition")
def search(request: Request, ctx: Ctx, base: Base, prefer: Prefer = None) -> Response:
    params = list(request.query_params.multi_items())
    return FHIRResponse(view_definitions.search(ctx, base, params, prefers_strict(prefer)))


@router.get("/ViewDefinition/{resource_id}")
def read(resource_id: str, ctx: Ctx, base: Base) -> Response:
    return resource_response(view_definitions.read(ctx, resource_id), base)


@router.put("/ViewDefinition/{resource_id}", openapi_extra=RESOURCE_BODY)
def update(
    resource_id: str,
    body: Body,
    ctx: Ctx,
    base: Base,
    prefer: Prefer = None,
    if_match: IfMatch = None,
) -> Response:
    check_body(body, TYPE, resource_id)
    stored, created = view_definitions.update(ctx, body, if_match)
    return resource_response(stored, base, 201 if created else 200, prefer, location=created)


@router.delete("/ViewDefinition/{resource_id}")
def delete(resource_id: str, ctx: Ctx, if_match: IfMatch = None) -> Response:
    stored = view_definitions.delete(ctx, resource_id, if_match)
    headers = {"ETag": f'W/"{stored.version_id}"'} if stored else {}
    return Response(status_code=204, headers=headers)


@router.get("/ViewDefinition/{resource_id}/_history/{version_id}")
def vread(resource_id: str, version_id: str, ctx: Ctx, base: Base) -> Response:
    return resource_response(view_definitions.vread(ctx, resource_id, version_id), base)


@router.get("/ViewDefinition/{resource_id}/_history")
def instance_history(
    resource_id: str,
    ctx: Ctx,
    base: Base,
    query: Annotated[HistoryQuery, Depends(history_query)],
) -> Response:
    return FHIRResponse(history.history(ctx, base, TYPE, resource_id, query))
