"""Bulk Data `$export`: the kick-off request checked and queued, the status and manifest, the
output files served, cancellation.

FHIR Bulk Data Access IG v2.0.0, https://hl7.org/fhir/uv/bulkdata/STU2/export.html. The work
itself is done by a worker of any node (services/export_runner.py); this module only reads and
writes the job rows and the job's folder.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_bridge.domain.compartment import PATIENT_COMPARTMENT
from fhir_bridge.domain.fhir import SUPPORTED_TYPES
from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.search import parse_search
from fhir_bridge.errors import (
    InvalidRequestError,
    ResourceNotFoundError,
    TooManyRequestsError,
)
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.history import since_instant
from fhir_bridge.services.resources import known_id, live
from fhir_bridge.store import exports
from fhir_bridge.store.base import StoreSession
from fhir_bridge.store.exports import JobRow
from fhir_bridge.store.sql import now_instant

OUTPUT_MEDIA = "application/fhir+ndjson"
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
ASSOCIATED_DATA = ("LatestProvenanceResources", "RelevantProvenanceResources")
VIEWS = ("plain", "research")
RETRY_AFTER = 2  # seconds a client waits between polls of a running job
MAX_PATIENTS = 1000  # `patient` values of one kick-off
MAX_FILTERS = 20  # `_typeFilter` values of one kick-off
_KNOWN = (
    "_outputFormat",
    "_since",
    "_type",
    "_elements",
    "_typeFilter",
    "patient",
    "includeAssociatedData",
    "view",
)


@dataclass
class ExportRequest:
    """A checked kick-off: what the job exports. Stored as JSON in the job row."""

    level: str  # system, patient or group
    base: str  # the FHIR base URL the file links start with
    group: str | None = None
    types: list[str] = field(default_factory=list)  # empty: every type of the level
    since: str | None = None
    filters: dict[str, list[str]] = field(default_factory=dict)  # type -> search queries
    elements: list[str] = field(default_factory=list)  # `element` or `Type.element`
    patients: list[str] | None = None  # Patient ids of a POST `patient` parameter
    associated: list[str] = field(default_factory=list)  # includeAssociatedData values
    view: str = "plain"
    warnings: list[str] = field(default_factory=list)  # lenient: what was ignored
    client: str | None = None  # the registered client that asked; only it reads the job

    def level_types(self) -> list[str]:
        """The types exported: `_type`, or every type the level can hold."""
        if self.types:
            return self.types
        if self.level == "system":
            return sorted(SUPPORTED_TYPES)
        return sorted(PATIENT_COMPARTMENT)


def parse_kickoff(
    base: str,
    level: str,
    group: str | None,
    params: list[tuple[str, Any]],
    lenient: bool,
    posted: bool,
) -> ExportRequest:
    """The kick-off parameters, from the query string or a POSTed Parameters resource
    (values as given there: strings, or a Reference dict for `patient`). Unknown or
    unsupported ones are refused (400), or with `handling=lenient` ignored with a warning."""
    request = ExportRequest(level=level, base=base, group=group)

    def refuse(message: str, name: str) -> None:
        if not lenient:
            raise InvalidRequestError(message, code="not-supported", expression=name)
        request.warnings.append(message)

    for name, value in params:
        if name not in _KNOWN:
            refuse(f"The export parameter '{name}' is not supported", name)
        elif name == "patient" and (not posted or level == "system"):
            refuse("The patient parameter is for POST Patient and Group exports", name)
        elif name == "patient":
            _patient(request, value)
        elif not isinstance(value, str):
            raise InvalidRequestError(f"{name} must be a string", expression=name)
        elif name == "_outputFormat" and value not in OUTPUT_FORMATS:
            raise InvalidRequestError(
                f"_outputFormat '{value}' is not supported; use application/fhir+ndjson",
                code="not-supported",
                expression=name,
            )
        elif name == "_since":
            request.since = _since(value)
        elif name == "_type":
            _types(request, value, refuse)
        elif name == "_elements":
            request.elements.extend(v.strip() for v in value.split(",") if v.strip())
        elif name == "_typeFilter":
            _type_filter(request, value, refuse)
        elif name == "includeAssociatedData":
            for item in (v.strip() for v in value.split(",")):
                if item not in ASSOCIATED_DATA:
                    refuse(f"includeAssociatedData '{item}' is not supported", name)
                elif item not in request.associated:
                    request.associated.append(item)
        elif name == "view":
            if value not in VIEWS:
                raise InvalidRequestError(
                    f"view must be one of {', '.join(VIEWS)}", expression=name
                )
            request.view = value
    if request.patients is not None and len(request.patients) > MAX_PATIENTS:
        raise InvalidRequestError(f"At most {MAX_PATIENTS} patient values", code="too-costly")
    if sum(len(v) for v in request.filters.values()) > MAX_FILTERS:
        raise InvalidRequestError(f"At most {MAX_FILTERS} _typeFilter values", code="too-costly")
    for resource_type in request.filters:
        if request.types and resource_type not in request.types:
            refuse(f"_typeFilter names {resource_type}, which _type leaves out", "_typeFilter")
    _check_elements(request, refuse)
    return request


def _since(value: str) -> str:
    instant = since_instant(value, "_since")
    if instant > now_instant():
        raise InvalidRequestError(f"_since '{value}' is in the future", expression="_since")
    return instant


def _types(request: ExportRequest, value: str, refuse: Any) -> None:
    allowed = request.level_types() if not request.types else sorted(SUPPORTED_TYPES)
    for resource_type in (v.strip() for v in value.split(",")):
        if resource_type not in SUPPORTED_TYPES:
            refuse(f"_type '{resource_type}' is not a resource type this server holds", "_type")
        elif request.level != "system" and resource_type not in allowed:
            refuse(f"_type '{resource_type}' is not in the Patient compartment", "_type")
        elif resource_type not in request.types:
            request.types.append(resource_type)


def _type_filter(request: ExportRequest, value: str, refuse: Any) -> None:
    resource_type, _, query = value.partition("?")
    if resource_type not in SUPPORTED_TYPES or not query:
        raise InvalidRequestError(
            f"_typeFilter '{value}' is not [type]?[search parameters]", expression="_typeFilter"
        )
    search = parse_search(resource_type, parse_qsl(query, keep_blank_values=True))
    if search.unknown:  # lenient: the whole filter is left out, never a part of it
        names = ", ".join(sorted({name for name, _ in search.unknown}))
        refuse(f"_typeFilter '{value}' has unknown search parameter(s): {names}", "_typeFilter")
        return
    if search.includes or search.revincludes or search.sort or search.elements:
        raise InvalidRequestError(
            f"_typeFilter '{value}' may hold search criteria only", expression="_typeFilter"
        )
    request.filters.setdefault(resource_type, []).append(query)


def _patient(request: ExportRequest, value: Any) -> None:
    reference = value.get("reference") if isinstance(value, dict) else None
    kind, _, patient_id = str(reference or "").partition("/")
    if kind != "Patient" or not patient_id:
        raise InvalidRequestError(
            "patient must be a Reference to Patient/[id]",
            expression="Parameters.parameter.valueReference",
        )
    known_id("Patient", patient_id)
    request.patients = [*(request.patients or []), patient_id]


def _check_elements(request: ExportRequest, refuse: Any) -> None:
    for element in request.elements:
        resource_type, dot, name = element.rpartition(".")
        if (dot and resource_type not in SUPPORTED_TYPES) or not name.isidentifier():
            refuse(f"_elements '{element}' is not [element] or [type].[element]", "_elements")


def kickoff(ctx: ServiceContext, request: ExportRequest, url: str, max_jobs: int) -> str:
    """Queue the job; its id. Refused with 429 while `max_jobs` are queued or running, with
    404 for a Group or patient this server does not hold."""
    job_id = uuid.uuid4().hex
    with ctx.store.session(write=True) as session:
        if request.group is not None:
            live(session.read("Group", request.group), "Group", request.group)
        for patient_id in request.patients or []:
            current = session.read("Patient", patient_id)
            if current is None or current.deleted:  # exports nothing, as a search would
                request.warnings.append(f"patient Patient/{patient_id} is not known")
        queue(session, job_id, url, orjson.dumps(asdict(request)), now_instant(), max_jobs)
    return job_id


def queue(
    session: StoreSession, job_id: str, url: str, params: bytes, instant: str, max_jobs: int
) -> None:
    """Queue a job of either kind (Bulk or view export) in `session`; 429 while `max_jobs`
    are queued or running."""
    if exports.active_jobs(session) >= max_jobs:
        raise TooManyRequestsError(
            f"{max_jobs} export jobs are queued or running; try again later", retry_after=30
        )
    exports.insert_job(session, job_id, url, params, instant, time.time())


def job_client(ctx: ServiceContext, job_id: str) -> str | None:
    """The client that asked for a job of either kind (None: no such job, or one asked for
    while authentication was off)."""
    job = _stored_job(ctx, job_id)
    client = orjson.loads(job.params).get("client") if job is not None else None
    return str(client) if client is not None else None


def job_request(job: JobRow) -> ExportRequest:
    return ExportRequest(**orjson.loads(job.params))


@dataclass(frozen=True)
class Status:
    """What a status request answers: running (progress), done (manifest) or failed."""

    running: bool
    progress: str = ""
    manifest: bytes = b""
    failure: str = ""
    expires: str = ""  # when the files go, an instant


def status(ctx: ServiceContext, job_id: str) -> Status:
    job = live_job(ctx, job_id)
    if job.status in exports.ACTIVE:
        return Status(True, progress=job.progress or ("in progress" if job.owner else "queued"))
    if job.status == "failed":
        return Status(False, failure=orjson.loads(job.manifest or b"{}").get("failure", ""))
    return Status(False, manifest=job.manifest or b"{}", expires=iso(job.expires or time.time()))


def cancel(ctx: ServiceContext, job_id: str, export_dir: Path) -> None:
    """Forget the job and remove its files; its worker notices at its next heartbeat."""
    with ctx.store.session(write=True) as session:
        if not exports.delete_job(session, job_id):
            raise ResourceNotFoundError(f"No export job {job_id}")
    shutil.rmtree(job_folder(export_dir, job_id), ignore_errors=True)


def output_file(job: JobRow, name: str, export_dir: Path) -> Path:
    """The path of an output file of a completed job (of either kind); 404 otherwise."""
    path = job_folder(export_dir, job.id) / name
    if job.status != "completed" or "/" in name or not path.is_file():
        raise ResourceNotFoundError(f"No export file {job.id}/{name}")
    return path


def job_folder(export_dir: Path, job_id: str) -> Path:
    return export_dir / job_id


def live_job(ctx: ServiceContext, job_id: str, kind: str | None = None) -> JobRow:
    """An unexpired job of `kind` (None: a Bulk export; a view export's parameters name
    their kind); 404 otherwise, also for a job of the other kind."""
    job = _stored_job(ctx, job_id)
    if job is None or (job.expires is not None and job.expires < time.time()):
        raise ResourceNotFoundError(f"No export job {job_id}")
    if orjson.loads(job.params).get("kind") != kind:
        raise ResourceNotFoundError(f"No export job {job_id}")
    return job


def warning_outcome(messages: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [Issue("warning", "not-supported", m).to_fhir() for m in messages],
    }


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _stored_job(ctx: ServiceContext, job_id: str) -> JobRow | None:
    """The job row of an id (job ids are hex: anything else names no job)."""
    with ctx.store.session() as session:
        return exports.read_job(session, job_id) if job_id.isalnum() else None
