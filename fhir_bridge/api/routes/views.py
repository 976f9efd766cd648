"""SQL on FHIR v2 operations: `$viewdefinition-run` at the system level and on a stored
ViewDefinition.
https://sql-on-fhir.org/ig/latest/operations.html

Not behind the JSON-only negotiation of the resource routes: rows come out as JSON, NDJSON or
CSV, errors as OperationOutcomes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from fhir_bridge.api.deps import PARAMETERS_BODY, base_url, context, json_body_within
from fhir_bridge.services import views
from fhir_bridge.services.context import ServiceContext

router = APIRouter()

Ctx = Annotated[ServiceContext, Depends(context)]
Base = Annotated[str, Depends(base_url)]


async def run_parameters(request: Request) -> list[views.Parameter]:
    """The URL's parameters, then those of a POSTed Parameters body (at most
    max_view_run_bytes: it carries the inline resources)."""
    params = views.query_parameters(request.query_params.multi_items())
    if request.method == "POST":
        limit = request.app.state.settings.max_view_run_bytes
        params += views.body_parameters(await json_body_within(request, limit))
    return params


Params = Annotated[list[views.Parameter], Depends(run_parameters)]


def _run(
    request: Request,
    ctx: ServiceContext,
    base: str,
    params: list[views.Parameter],
    view_id: str | None,
) -> Response:
    settings = request.app.state.settings
    limits = views.Limits(settings.max_view_run_resources, settings.max_view_run_rows)
    accept = request.headers.get("accept")
    run = views.parse_run(ctx, base, params, view_id, accept, limits)
    rows = views.rows(ctx, request.app.state.research_view, run, limits)
    chunks = views.started(views.encoded(run, rows))
    return StreamingResponse(chunks, media_type=views.MEDIA_TYPES[run.format])


@router.get("/$viewdefinition-run", operation_id="viewdefinition_run_get")
@router.post(
    "/$viewdefinition-run", operation_id="viewdefinition_run_post", openapi_extra=PARAMETERS_BODY
)
def run_system(request: Request, ctx: Ctx, base: Base, params: Params) -> Response:
    return _run(request, ctx, base, params, None)


@router.get(
    "/ViewDefinition/{view_id}/$viewdefinition-run", operation_id="viewdefinition_run_instance_get"
)
@router.post(
    "/ViewDefinition/{view_id}/$viewdefinition-run",
    operation_id="viewdefinition_run_instance_post",
    openapi_extra=PARAMETERS_BODY,
)
def run_instance(view_id: str, request: Request, ctx: Ctx, base: Base, params: Params) -> Response:
    return _run(request, ctx, base, params, view_id)
