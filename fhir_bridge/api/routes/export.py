"""Bulk Data `$export` routes: kick-off at system, Patient and Group level, status, files.

https://hl7.org/fhir/uv/bulkdata/STU2/export.html. Not behind the JSON-only negotiation of
the other routes: output files are NDJSON, and the kick-off checks its own headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, Response

from fhir_bridge.api.auth import principal_of, readable_types
from fhir_bridge.api.deps import PARAMETERS_BODY, base_url, context, json_body
from fhir_bridge.api.responses import FHIRResponse, http_date
from fhir_bridge.domain.issues import Issue, operation_outcome
from fhir_bridge.errors import ForbiddenError, InvalidRequestError
from fhir_bridge.services import export, research, views
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.resources import known_id

router = APIRouter()

Ctx = Annotated[ServiceContext, Depends(context)]
Base = Annotated[str, Depends(base_url)]
# Bulk Data kick-off: "Accept: application/fhir+json" (export.html#headers); an absent
# Accept or */* is taken as that, plain application/json is refused
_ACCEPTED = ("application/fhir+json", "*/*")


def _kickoff(
    request: Request,
    ctx: ServiceContext,
    base: str,
    level: str,
    group: str | None,
    params: list[tuple[str, Any]],
    posted: bool,
) -> Response:
    accept = request.headers.get("accept")
    if accept and not any(m.split(";")[0].strip() in _ACCEPTED for m in accept.split(",")):
        raise InvalidRequestError(f"Accept must be application/fhir+json, not '{accept}'")
    prefer = (request.headers.get("prefer") or "").replace(" ", "")
    preferences = {p.strip() for p in prefer.replace(";", ",").split(",")}
    if "respond-async" not in preferences:
        raise InvalidRequestError("A Bulk Data export needs the header Prefer: respond-async")
    lenient = "handling=lenient" in preferences
    parsed = export.parse_kickoff(base, level, group, params, lenient, posted)
    principal = principal_of(request)
    if principal is not None:
        parsed.client = principal.client_id
        parsed.types = readable_types(principal, parsed.level_types(), explicit=bool(parsed.types))
    if principal is not None and principal.role == "researcher":  # the research view only
        if parsed.view != "research" and any(name == "view" for name, _ in params):
            raise ForbiddenError("A researcher's export is of the research view (view=research)")
        parsed.view = "research"
        if parsed.patients:
            view = request.app.state.research_view
            parsed.patients = research.patients_named(ctx, view, parsed.patients)
    settings = request.app.state.settings
    job_id = export.kickoff(ctx, parsed, str(request.url), settings.max_export_jobs)
    body = operation_outcome([Issue("information", "informational", f"Export job {job_id}")])
    headers = {"Content-Location": f"{base}/$export-status/{job_id}"}
    return FHIRResponse(orjson.dumps(body), status_code=202, headers=headers)


def _posted(body: Any) -> list[tuple[str, Any]]:
    """The parameters of a Parameters body: (name, its one value: a string or a Reference)."""
    found: list[tuple[str, Any]] = []
    for parameter in views.body_parameters(body):
        values = [v for k, v in parameter.body.items() if k.startswith("value")]
        if len(values) != 1:
            raise InvalidRequestError(
                "Each parameter needs a name and one value", expression=parameter.location
            )
        found.append((parameter.name, values[0]))
    return found


async def kickoff_params(request: Request) -> tuple[list[tuple[str, Any]], bool]:
    """The kick-off parameters: the query string of a GET, the Parameters body of a POST."""
    if request.method == "POST":
        return _posted(await json_body(request)), True
    return list(request.query_params.multi_items()), False


Params = Annotated[tuple[list[tuple[str, Any]], bool], Depends(kickoff_params)]


@router.get("/$export", operation_id="export_system_get")
@router.post("/$export", operation_id="export_system_post", openapi_extra=PARAMETERS_BODY)
def export_system(request: Request, ctx: Ctx, base: Base, params: Params) -> Response:
    return _kickoff(request, ctx, base, "system", None, *params)


@router.get("/Patient/$export", operation_id="export_patients_get")
@router.post("/Patient/$export", operation_id="export_patients_post", openapi_extra=PARAMETERS_BODY)
def export_patients(request: Request, ctx: Ctx, base: Base, params: Params) -> Response:
    return _kickoff(request, ctx, base, "patient", None, *params)


@router.get("/Group/{group_id}/$export", operation_id="export_group_get")
@router.post(
    "/Group/{group_id}/$export", operation_id="export_group_post", openapi_extra=PARAMETERS_BODY
)
def export_group(group_id: str, request: Request, ctx: Ctx, base: Base, params: Params) -> Response:
    known_id("Group", group_id)
    return _kickoff(request, ctx, base, "group", group_id, *params)


@router.get("/$export-status/{job_id}")
def export_status(job_id: str, ctx: Ctx) -> Response:
    found = export.status(ctx, job_id)
    if found.running:
        headers = {"X-Progress": found.progress[:99], "Retry-After": str(export.RETRY_AFTER)}
        return Response(status_code=202, headers=headers)
    if found.failure:
        issue = Issue("error", "exception", f"The export failed: {found.failure}")
        return FHIRResponse(orjson.dumps(operation_outcome([issue])), status_code=500)
    headers = {"Expires": http_date(found.expires)} if found.expires else {}
    return Response(found.manifest, media_type="application/json", headers=headers)


@router.delete("/$export-status/{job_id}")
def export_cancel(job_id: str, request: Request, ctx: Ctx) -> Response:
    export.cancel(ctx, job_id, Path(request.app.state.settings.export_dir))
    issue = Issue("information", "informational", f"Export job {job_id} cancelled")
    return FHIRResponse(orjson.dumps(operation_outcome([issue])), status_code=202)


@router.get("/$export-file/{job_id}/{name}")
def export_file(job_id: str, name: str, request: Request, ctx: Ctx) -> Response:
    job = export.live_job(ctx, job_id)
    path = export.output_file(job, name, Path(request.app.state.settings.export_dir))
    return FileResponse(path, media_type=export.OUTPUT_MEDIA)
