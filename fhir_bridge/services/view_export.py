"""SQL on FHIR v2 `$viewdefinition-export`: the kick-off checked and queued as a Bulk export job,
the status as a Parameters resource, and the files of a job written by the export worker: one
per view, its rows over the research view of this server's data.

https://sql-on-fhir.org/ig/latest/OperationDefinition-ViewDefinitionExport.html (R4 mode: at
the system level). Jobs share the Bulk export's job table, workers, limits and expiry
(store/exports.py, services/export_runner.py); their parameters say they are view exports.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fhir_bridge.errors import (
    FHIRBridgeError,
    InvalidRequestError,
)
from fhir_bridge.pseudonym import ResearchView
from fhir_bridge.services import view_definitions, views
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.export import iso, live_job, output_file, queue
from fhir_bridge.services.history import since_instant
from fhir_bridge.services.research import research_resources
from fhir_bridge.store.exports import JobRow
from fhir_bridge.store.sql import now_instant
from fhir_bridge.views import run_tuples

KIND = "viewdefinition-export"  # in a job's parameters: a view export, not a Bulk export
FORMATS = ("ndjson", "csv", "json", "parquet")
SUFFIXES = {"ndjson": ".ndjson", "csv": ".csv", "json": ".json", "parquet": ".parquet"}
MAX_VIEWS = 50  # views of one export
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_VIEW_PARTS = ("name", "viewReference", "viewResource")
_ONCE = ("_format", "_since", "group", "clientTrackingId")


@dataclass
class ViewExportRequest:
    """A checked kick-off, stored as JSON in the job row; stored views are resolved at
    kick-off, so later changes to them do not change the job."""

    base: str
    views: list[dict[str, Any]] = field(default_factory=list)  # {"name", "view"}
    format: str = "ndjson"
    patients: list[str] | None = None
    group: str | None = None
    since: str | None = None
    client_tracking_id: str | None = None
    kind: str = KIND
    started: str = ""  # exportStartTime, set at kick-off
    client: str | None = None  # the registered client that asked; only it reads the job


def parse_kickoff(
    ctx: ServiceContext, base: str, params: Sequence[views.Parameter]
) -> ViewExportRequest:
    """The kick-off's views (each `view` with parts name, viewReference or viewResource; a
    bare viewReference or viewResource is a view too), `_format`, `patient`, `group`, `_since`
    and `clientTrackingId`; each view compiled, every name unique."""
    request = ViewExportRequest(base=base)
    seen: set[str] = set()
    patients: list[str] = []
    for param in params:
        if param.name in _ONCE and param.name in seen:
            raise InvalidRequestError(f"{param.name} may be given once", expression=param.location)
        seen.add(param.name)
        if param.name == "view":
            request.views.append(_view(ctx, base, param, len(request.views)))
        elif param.name in ("viewReference", "viewResource"):
            request.views.append(_view(ctx, base, _wrapped(param), len(request.views)))
        elif param.name == "_format":
            request.format = views.format_of(param, FORMATS)
        elif param.name == "patient":
            patients.append(views.reference_of(param, "Patient", base))
        elif param.name == "group":
            request.group = views.reference_of(param, "Group", base)
        elif param.name == "_since":
            request.since = since_instant(views.string_of(param, views.DATES), param.location)
        elif param.name == "clientTrackingId":
            request.client_tracking_id = views.string_of(param, ("String",))
        else:
            raise InvalidRequestError(
                f"The parameter '{param.name}' is not supported by $viewdefinition-export",
                code="not-supported",
                expression=param.location,
            )
    if not request.views:
        raise InvalidRequestError("Give at least one view", code="required", expression="view")
    if len(request.views) > MAX_VIEWS:
        raise InvalidRequestError(f"At most {MAX_VIEWS} views", code="too-costly")
    if len(patients) > views.MAX_PATIENTS:
        raise InvalidRequestError(f"At most {views.MAX_PATIENTS} patient values", code="too-costly")
    request.patients = patients or None
    names = [item["name"] for item in request.views]
    for name in names:
        if names.count(name) > 1:
            raise InvalidRequestError(f"Two views are named {name}", expression="view")
    return request


def _wrapped(param: views.Parameter) -> views.Parameter:
    part = {key: value for key, value in param.body.items() if key != "name"}
    body = {"name": "view", "part": [{"name": param.name, **part}]}
    return views.Parameter("view", body, param.location)


def _view(ctx: ServiceContext, base: str, param: views.Parameter, n: int) -> dict[str, Any]:
    parts = param.body.get("part")
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise InvalidRequestError("view needs parts", code="structure", expression=param.location)
    found: dict[str, views.Parameter] = {}
    for m, part in enumerate(parts):
        location = f"{param.location}.part[{m}]"
        name = part.get("name")
        if name not in _VIEW_PARTS or name in found:
            raise InvalidRequestError(
                "view parts are name, and one of viewReference and viewResource, once each",
                expression=location,
            )
        found[str(name)] = views.Parameter(str(name), part, location)
    if ("viewReference" in found) == ("viewResource" in found):
        raise InvalidRequestError(
            "A view needs one of viewReference and viewResource",
            code="required",
            expression=param.location,
        )
    if "viewResource" in found:
        given = found["viewResource"]
        view = views.resource_of(given)
        view_definitions.checked(view, f"{given.location}.resource")
    else:
        given = found["viewReference"]
        reference = views.string_of(given, views.REFERENCES)
        view = view_definitions.resolve(ctx, base, reference, given.location)
        view_definitions.checked(view)
    name = views.string_of(found["name"], ("String",)) if "name" in found else view.get("name")
    name = name if isinstance(name, str) else f"view_{n + 1}"
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(
            "A view's name must match [A-Za-z][A-Za-z0-9_-]{0,63}",
            expression=found["name"].location if "name" in found else param.location,
        )
    return {"name": name, "view": view}


def kickoff(ctx: ServiceContext, request: ViewExportRequest, url: str, max_jobs: int) -> str:
    """Queue the job; its id. 429 while `max_jobs` exports (of either kind) are queued or
    running; 404 for a Group or Patient this server does not hold."""
    job_id = uuid.uuid4().hex
    request.started = now_instant()
    with ctx.store.session(write=True) as session:
        views.check_known(session, request.group, request.patients)
        queue(session, job_id, url, orjson.dumps(asdict(request)), request.started, max_jobs)
    return job_id


def is_view_job(job: JobRow) -> bool:
    return bool(orjson.loads(job.params).get("kind") == KIND)


def view_job(ctx: ServiceContext, job_id: str) -> tuple[JobRow, ViewExportRequest]:
    """A view export job that has not expired; 404 otherwise (a Bulk export's id too)."""
    found = live_job(ctx, job_id, KIND)
    return found, ViewExportRequest(**orjson.loads(found.params))


def status(ctx: ServiceContext, job_id: str, location: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and Parameters of a status request: 202 accepted, in-progress or
    failed (the failure in `error`; the operation says 202 for that too), 200 completed with
    an `output` per view."""
    row, request = view_job(ctx, job_id)
    params: list[dict[str, Any]] = [{"name": "exportId", "valueString": row.id}]
    if request.client_tracking_id:
        params.append({"name": "clientTrackingId", "valueString": request.client_tracking_id})
    params.append({"name": "status", "valueCode": row.status})
    params.append({"name": "location", "valueUri": location})
    params.append({"name": "cancelUrl", "valueUri": location})
    params.append({"name": "_format", "valueCode": request.format})
    params.append({"name": "exportStartTime", "valueInstant": request.started})
    manifest = orjson.loads(row.manifest) if row.manifest else {}
    if row.status == "failed":
        params.append({"name": "error", "valueString": manifest.get("failure", "")})
        return 202, _parameters(params)
    if row.status != "completed":
        return 202, _parameters(params)
    params.append({"name": "exportEndTime", "valueInstant": manifest["end"]})
    params.append({"name": "exportDuration", "valueInteger": manifest["duration"]})
    for output in manifest["output"]:
        parts = [{"name": "name", "valueString": output["name"]}]
        parts += [{"name": "location", "valueUri": url} for url in output["location"]]
        params.append({"name": "output", "part": parts})
    return 200, _parameters(params)


def _parameters(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": params}


def file_path(ctx: ServiceContext, job_id: str, name: str, export_dir: Path) -> Path:
    """An output file of a completed, unexpired view export; 404 otherwise."""
    return output_file(live_job(ctx, job_id, KIND), name, export_dir)


def write(
    ctx: ServiceContext,
    research_view: ResearchView,
    job: JobRow,
    folder: Path,
    beat: Callable[[str], None],
) -> dict[str, Any]:
    """Write a file per view, its rows streaming from the research view of the data as of
    the kick-off; what the job's status reports when done. Run by the export worker."""
    request = ViewExportRequest(**orjson.loads(job.params))
    began = time.monotonic()
    last_beat = began
    output = []
    for n, item in enumerate(request.views):
        name = item["name"]
        view = view_definitions.checked(item["view"])
        run = views.RunRequest(view, view_definitions.TYPE, format=request.format)
        source = research_resources(
            ctx,
            research_view,
            [view.resource],
            group=request.group,
            patients=request.patients,
            since=request.since,
            until=job.transaction_time,
        )
        file_name = f"{name}{SUFFIXES[request.format]}"
        try:
            with open(folder / file_name, "wb", buffering=1 << 20) as out:
                for chunk in views.encoded(run, run_tuples(view, source)):
                    out.write(chunk)
                    if time.monotonic() - last_beat > 1.0:
                        beat(f"view {n + 1} of {len(request.views)} ({name})")
                        last_beat = time.monotonic()
        except FHIRBridgeError as error:
            where = ", ".join(issue.expression or "" for issue in error.issues)
            raise RuntimeError(f"the view {name} failed on the data at {where}") from None
        url = f"{request.base}/$viewdefinition-export-file/{job.id}/{file_name}"
        output.append({"name": name, "location": [url]})
    ended = time.time()
    return {
        "end": iso(ended),
        "duration": round(time.monotonic() - began),
        "output": output,
    }
