"""The export worker: a thread in every server process that claims queued export jobs (one
worker per job, on any node) and writes their NDJSON files, streaming batch by batch; a
`$viewdefinition-export` job's files are written by services/view_export.py.

A job restarts from the beginning when its worker stopped without finishing (its heartbeat
goes stale): the same transactionTime bounds what it reads, so the files come out the same.
After MAX_ATTEMPTS starts it ends as failed, with the reason in its status answer.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

import orjson

from fhir_bridge.domain import fhir_json
from fhir_bridge.domain.compartment import PATIENT_COMPARTMENT
from fhir_bridge.domain.search import parse_search
from fhir_bridge.pseudonym import ResearchView
from fhir_bridge.services import view_export
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.export import (
    ExportRequest,
    job_folder,
    job_request,
    warning_outcome,
)
from fhir_bridge.services.research import PATIENT_CHUNK, Research, batches, group_members
from fhir_bridge.services.search import shape_elements
from fhir_bridge.store import exports
from fhir_bridge.store.base import StoreSession
from fhir_bridge.store.exports import JobRow, Selection

log = logging.getLogger("fhir_bridge.export")

MAX_ATTEMPTS = 3


@dataclass
class ExportSettings:
    export_dir: Path
    ttl_seconds: int
    file_resources: int
    stale_seconds: float = 30.0
    poll_seconds: float = 0.5


class Cancelled(Exception):
    """The job was deleted, or taken over, while running."""


class Stopping(Exception):
    """The server process is shutting down: the job goes back to the queue."""


class Worker:
    """Claims and runs export jobs until stopped; one per server process."""

    def __init__(
        self, ctx: ServiceContext, settings: ExportSettings, research_view: ResearchView
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.research_view = research_view
        self.owner = uuid.uuid4().hex
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="export-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stopping.wait(self.settings.poll_seconds):
            try:
                self.sweep()
                job = self.claim()
                if job is not None:
                    self.run(job)
            except Exception:  # a database hiccup must not end the worker
                log.exception("export worker error")

    def sweep(self) -> None:
        """Forget expired jobs and remove their files."""
        with self.ctx.store.session() as session:
            expired = exports.expired_jobs(session, time.time())
        for job_id in expired:
            with self.ctx.store.session(write=True) as session:
                exports.delete_job(session, job_id)
            shutil.rmtree(job_folder(self.settings.export_dir, job_id), ignore_errors=True)

    def claim(self) -> JobRow | None:
        stale_before = time.time() - self.settings.stale_seconds
        with self.ctx.store.session() as session:
            if not exports.claimable(session, stale_before):
                return None
        with self.ctx.store.session(write=True) as session:
            return exports.claim_job(session, self.owner, time.time(), stale_before)

    def run(self, job: JobRow) -> None:
        folder = job_folder(self.settings.export_dir, job.id)
        shutil.rmtree(folder, ignore_errors=True)  # a restarted job begins again
        try:
            if job.attempts > MAX_ATTEMPTS:
                raise RuntimeError(f"the export stopped unfinished {MAX_ATTEMPTS} times")
            folder.mkdir(parents=True, exist_ok=True)
            if view_export.is_view_job(job):
                beat = partial(self._beat, job)
                manifest = view_export.write(self.ctx, self.research_view, job, folder, beat)
            else:
                manifest = self._export(job, folder)
            status = "completed"
        except Cancelled:
            shutil.rmtree(folder, ignore_errors=True)
            return
        except Stopping:
            shutil.rmtree(folder, ignore_errors=True)
            with self.ctx.store.session(write=True) as session:
                exports.release_job(session, job.id, self.owner)
            return
        except Exception as exc:
            log.exception("export job failed")
            shutil.rmtree(folder, ignore_errors=True)
            reason = str(exc) if isinstance(exc, RuntimeError) else "the export failed"
            manifest, status = {"failure": reason}, "failed"
        expires = time.time() + self.settings.ttl_seconds
        with self.ctx.store.session(write=True) as session:
            done = exports.finish_job(
                session, job.id, self.owner, status, orjson.dumps(manifest), expires
            )
        if not done:  # cancelled at the last moment
            shutil.rmtree(folder, ignore_errors=True)

    def _beat(self, job: JobRow, progress: str) -> None:
        if self._stopping.is_set():  # another process takes the job now, not when it goes stale
            raise Stopping
        with self.ctx.store.session(write=True) as session:
            if not exports.beat(session, job.id, self.owner, progress, time.time()):
                raise Cancelled

    def _export(self, job: JobRow, folder: Path) -> dict[str, Any]:
        request = job_request(job)
        patients = self._patients(request)
        research = None
        if request.view == "research":
            research = Research.read(self.ctx, self.research_view, job.transaction_time, patients)
        base = request.base
        output: list[dict[str, Any]] = []
        last_beat = time.monotonic()
        exported = 0
        for resource_type in request.level_types():
            if research is not None and not research.view.releases(resource_type):
                continue
            writer = _Files(folder, resource_type, self.settings.file_resources)
            for data in self._resources(request, job, resource_type, patients, research):
                writer.write(data)
                exported += 1
                if time.monotonic() - last_beat > 1.0:
                    self._beat(job, f"{exported} resources exported ({resource_type})")
                    last_beat = time.monotonic()
            writer.close()
            output.extend(writer.entries(resource_type, base, job.id))
        if request.associated:
            writer = _Files(folder, "Provenance-associated", self.settings.file_resources)
            for data in self._provenance(request, job, patients, research):
                writer.write(data)
            writer.close()
            output.extend(writer.entries("Provenance", base, job.id))
        errors = []
        if request.warnings:
            name = "OperationOutcome-1.ndjson"
            (folder / name).write_bytes(orjson.dumps(warning_outcome(request.warnings)) + b"\n")
            errors.append(
                {"type": "OperationOutcome", "url": f"{base}/$export-file/{job.id}/{name}"}
            )
        manifest: dict[str, Any] = {
            "transactionTime": job.transaction_time,
            "request": job.request,
            "requiresAccessToken": request.client is not None,
            "output": output,
            "error": errors,
        }
        if research is not None:
            manifest["extension"] = {
                "https://fhir-bridge.org/fhir/export/excluded": research.excluded()
            }
        return manifest

    def _resources(
        self,
        request: ExportRequest,
        job: JobRow,
        resource_type: str,
        patients: tuple[str, ...] | None,
        research: Research | None,
    ) -> Iterator[bytes]:
        """The NDJSON lines of one type, in write order, batch by batch."""
        in_compartment = resource_type in PATIENT_COMPARTMENT
        if request.level != "system" and not in_compartment:
            return
        elements = _elements_of(request.elements, resource_type)
        chunks: list[tuple[str, ...] | None] = [None]
        if patients is not None:  # none for a Group without members
            chunks = [
                patients[n : n + PATIENT_CHUNK] for n in range(0, len(patients), PATIENT_CHUNK)
            ]
        for chunk in chunks:
            with_patient = research is not None and in_compartment
            selection = _selection(request, job, resource_type, chunk, with_patient=with_patient)
            for rows in batches(self.ctx, selection):
                for _, _, data, patient in rows:
                    line: bytes | None = data
                    if research is not None:
                        resource = research.apply(data, patient)
                        line = None if resource is None else fhir_json.dumps(resource)
                    if line is not None and elements:
                        line = shape_elements(line, elements)
                    if line is not None:
                        yield line

    def _provenance(
        self,
        request: ExportRequest,
        job: JobRow,
        patients: tuple[str, ...] | None,
        research: Research | None,
    ) -> Iterator[bytes]:
        """includeAssociatedData: the Provenance resources whose target is an exported
        resource (RelevantProvenanceResources), or only the newest one of each exported
        resource (LatestProvenanceResources); those the export already holds are left out."""
        exported = request.level_types()
        if "Provenance" in exported and not request.filters.get("Provenance"):
            return  # every Provenance in scope is in the Provenance files already
        latest_only = "RelevantProvenanceResources" not in request.associated
        selection = Selection(
            "Provenance", until=job.transaction_time, with_patient=research is not None
        )
        for rows in batches(self.ctx, selection):
            named = [_targets(data, exported) for _, _, data, _ in rows]
            every = {target for targets in named for target in targets}
            with self.ctx.store.session() as session:
                kept = self._in_export(session, request, job, patients, every, latest_only)
            for (seq, _, data, patient), targets in zip(rows, named, strict=True):
                if latest_only:
                    relevant = any(kept.get(t) == seq for t in targets)
                else:
                    relevant = any(t in kept for t in targets)
                if not relevant:
                    continue
                if research is None:
                    yield data
                elif (resource := research.apply(data, patient)) is not None:
                    yield fhir_json.dumps(resource)

    def _in_export(
        self,
        session: StoreSession,
        request: ExportRequest,
        job: JobRow,
        patients: tuple[str, ...] | None,
        targets: set[tuple[str, str]],
        latest_only: bool,
    ) -> dict[tuple[str, str], int]:
        """Of `targets`, those the export holds, each with the write sequence of its newest
        Provenance (latest_only), or 0."""
        by_type: dict[str, list[str]] = {}
        for resource_type, resource_id in targets:
            by_type.setdefault(resource_type, []).append(resource_id)
        kept: dict[tuple[str, str], int] = {}
        for resource_type, ids in by_type.items():
            selection = _selection(request, job, resource_type, patients, ids=tuple(ids))
            found = [row[1] for row in exports.read_batch(session, selection, -1, len(ids))]
            newest = (
                exports.latest_provenance(session, job.transaction_time, resource_type, found)
                if latest_only and found
                else {}
            )
            kept.update({(resource_type, i): newest.get(i, 0) for i in found})
        return kept

    def _patients(self, request: ExportRequest) -> tuple[str, ...] | None:
        """The Patients a Group or `patient` export is limited to; None: no limit. A `patient`
        parameter of a Group export keeps the members it names."""
        if request.group is not None:
            return group_members(self.ctx, request.group, request.patients)
        return None if request.patients is None else tuple(request.patients)


class _Files:
    """The NDJSON files of one type: a new file every `limit` resources."""

    def __init__(self, folder: Path, resource_type: str, limit: int) -> None:
        self.folder = folder
        self.resource_type = resource_type
        self.limit = limit
        self.names: list[str] = []
        self.written = 0  # resources in all files
        self._out: IO[bytes] | None = None

    def write(self, line: bytes) -> None:
        if self.written % self.limit == 0:
            self._next()
        assert self._out is not None
        self._out.write(line)
        self._out.write(b"\n")
        self.written += 1

    def _next(self) -> None:
        if self._out is not None:
            self._out.close()
        self.names.append(f"{self.resource_type}-{len(self.names) + 1}.ndjson")
        self._out = open(self.folder / self.names[-1], "wb", buffering=1 << 20)  # noqa: SIM115

    def close(self) -> None:
        if self._out is not None:
            self._out.close()

    def entries(self, resource_type: str, base: str, job_id: str) -> list[dict[str, Any]]:
        """The manifest's `output` items of these files: every file but the last is full."""
        counts = [min(self.limit, self.written - n * self.limit) for n in range(len(self.names))]
        return [
            {"type": resource_type, "url": f"{base}/$export-file/{job_id}/{name}", "count": n}
            for name, n in zip(self.names, counts, strict=True)
        ]


def _selection(
    request: ExportRequest,
    job: JobRow,
    resource_type: str,
    patients: tuple[str, ...] | None,
    with_patient: bool = False,
    ids: tuple[str, ...] | None = None,
) -> Selection:
    """What the job reads of a type: its time window, level, patients and `_typeFilter`."""
    filters = tuple(
        parse_search(resource_type, parse_qsl(query, keep_blank_values=True))
        for query in request.filters.get(resource_type, ())
    )
    return Selection(
        resource_type,
        until=job.transaction_time,
        since=request.since,
        compartment=request.level != "system",
        patients=patients,
        filters=filters,
        with_patient=with_patient,
        ids=ids,
    )


def _targets(data: bytes, types: list[str]) -> list[tuple[str, str]]:
    """The local (type, id) targets of a Provenance among `types`."""
    found = []
    for target in orjson.loads(data).get("target") or []:
        kind, _, rest = str(target.get("reference", "")).partition("/")
        if kind in types and rest and "/" not in rest:
            found.append((kind, rest))
    return found


def _elements_of(elements: list[str], resource_type: str) -> list[str]:
    """The `_elements` that apply to a type: bare names, and `Type.name` of this type."""
    names = []
    for element in elements:
        owner, dot, name = element.rpartition(".")
        if not dot or owner == resource_type:
            names.append(name)
    return names
