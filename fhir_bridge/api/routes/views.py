"""SQL on FHIR v2 operations: `$viewdefinition-run` at the system level and on a stored
ViewDefinition; `$viewdefinition-export` at the system level, its status and its files.
https://sql-on-fhir.org/ig/latest/operations.html

Not behind the JSON-only negotiation of the resource routes: rows come out as JSON, NDJSON,
CSV or Parquet, errors as OperationOutcomes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, Response, StreamingResponse

from fhir_bridge.api.auth import principal_of
from fhir_bridge.api.deps import PARAMETERS_BODY, base_url, context, json_body, json_body_within
from fhir_bridge.api.responses import FHIRResponse
from fhir_bridge.domain.issues import Issue, operation_outcome
from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.services import export, view_export, views
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


async def export_parameters(request: Request) -> list[views.Parameter]:
    return views.body_parameters(await json_body(request))


@router.post("/$viewdefinition-export", openapi_extra=PARAMETERS_BODY)
def export_kickoff(
    request: Request,
    ctx: Ctx,
    base: Base,
    params: Annotated[list[views.Parameter], Depends(export_parameters)],
) -> Response:
    prefer = (request.headers.get("prefer") or "").replace(" ", "")
    if "respond-async" not in prefer.replace(";", ",").split(","):
        raise InvalidRequestError("$viewdefinition-export needs the header Prefer: respond-async")
    parsed = view_export.parse_kickoff(ctx, base, params)
    principal = principal_of(request)
    parsed.client = principal.client_id if principal is not None else None
    max_jobs = request.app.state.settings.max_export_jobs
    job_id = view_export.kickoff(ctx, parsed, str(request.url), max_jobs)
    location = f"{base}/$viewdefinition-export-status/{job_id}"
    _, body = view_export.status(ctx, job_id, location)
    return FHIRResponse(orjson.dumps(body), status_code=202, headers={"Content-Location": location})


@router.get("/$viewdefinition-export-status/{job_id}")
def export_status(job_id: str, ctx: Ctx, base: Base) -> Response:
    location = f"{base}/$viewdefinition-export-status/{job_id}"
    status, body = view_export.status(ctx, job_id, location)
    running = status == 202 and {"name": "status", "valueCode": "failed"} not in body["parameter"]
    headers = {"Retry-After": str(export.RETRY_AFTER)} if running else {}
    return FHIRResponse(orjson.dumps(body), status_code=status, headers=headers)


@router.delete("/$viewdefinition-export-status/{job_id}")
def export_cancel(job_id: str, request: Request, ctx: Ctx) -> Response:
    view_export.view_job(ctx, job_id)
    export.cancel(ctx, job_id, Path(request.app.state.settings.export_dir))
    issue = Issue("information", "informational", f"Export job {job_id} cancelled")
    return FHIRResponse(orjson.dumps(operation_outcome([issue])), status_code=202)


@router.get("/$viewdefinition-export-file/{job_id}/{name}")
def export_file(job_id: str, name: str, request: Request, ctx: Ctx) -> Response:
    export_dir = Path(request.app.state.settings.export_dir)
    path = view_export.file_path(ctx, job_id, name, export_dir)
    media = views.MEDIA_TYPES[path.suffix.removeprefix(".")]
    return FileResponse(path, media_type=media)
