"""Bulk Data export in SQL: the job table (claimed by one worker of any node) and the batched
read of what a job exports.

https://hl7.org/fhir/uv/bulkdata/STU2/export.html. A job row moves accepted -> in-progress ->
completed | failed; a worker holds an in-progress job while its heartbeat is fresh, and a job
whose worker stopped (a crash, a restart) is claimed again by the next worker that looks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_bridge.domain.compartment import patient_reference_params
from fhir_bridge.domain.search import SearchRequest
from fhir_bridge.store.base import StoreSession
from fhir_bridge.store.search import _SQL, where_sql

ACTIVE = ("accepted", "in-progress")
_JOB_COLUMNS = (
    "id, status, request, params, transaction_time, created, owner, heartbeat, attempts, "
    "progress, manifest, expires"
)


@dataclass(frozen=True, slots=True)
class JobRow:
    id: str
    status: str  # accepted, in-progress, completed, failed
    request: str  # the kick-off URL
    params: bytes  # the parsed kick-off (JSON), read by services/export.py
    transaction_time: str
    created: float
    owner: str | None
    heartbeat: float | None
    attempts: int
    progress: str | None
    manifest: bytes | None
    expires: float | None


def _job(row: Sequence[Any]) -> JobRow:
    return JobRow(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        bytes(row[3]),
        str(row[4]),
        float(row[5]),
        row[6],
        None if row[7] is None else float(row[7]),
        int(row[8]),
        row[9],
        None if row[10] is None else bytes(row[10]),
        None if row[11] is None else float(row[11]),
    )


def insert_job(
    session: StoreSession, job_id: str, request: str, params: bytes, instant: str, now: float
) -> None:
    session.execute(
        f"INSERT INTO export_jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (job_id, "accepted", request, params, instant, now, None, None, 0, None, None, None),
    )


def active_jobs(session: StoreSession) -> int:
    rows = session.execute("SELECT COUNT(*) FROM export_jobs WHERE status IN (?, ?)", ACTIVE)
    return int(rows[0][0])


def read_job(session: StoreSession, job_id: str) -> JobRow | None:
    rows = session.execute(f"SELECT {_JOB_COLUMNS} FROM export_jobs WHERE id = ?", (job_id,))
    return _job(rows[0]) if rows else None


def claimable(session: StoreSession, stale_before: float) -> bool:
    """Whether a job waits for a worker: accepted, or in progress with a stale heartbeat."""
    rows = session.execute(
        "SELECT 1 FROM export_jobs WHERE status = ? OR (status = ? AND heartbeat < ?) LIMIT 1",
        ("accepted", "in-progress", stale_before),
    )
    return bool(rows)


def claim_job(session: StoreSession, owner: str, now: float, stale_before: float) -> JobRow | None:
    """The oldest claimable job, now this owner's; in a write session, so two workers never
    claim the same job."""
    rows = session.execute(
        "SELECT id FROM export_jobs WHERE status = ? OR (status = ? AND heartbeat < ?) "
        "ORDER BY created LIMIT 1",
        ("accepted", "in-progress", stale_before),
    )
    if not rows:
        return None
    session.execute(
        "UPDATE export_jobs SET status = ?, owner = ?, heartbeat = ?, attempts = attempts + 1 "
        "WHERE id = ?",
        ("in-progress", owner, now, rows[0][0]),
    )
    return read_job(session, str(rows[0][0]))


def beat(session: StoreSession, job_id: str, owner: str, progress: str, now: float) -> bool:
    """Record progress; False when the job is no longer this owner's (cancelled, or taken
    over after a stale heartbeat): the worker then stops."""
    rows = session.execute(
        "UPDATE export_jobs SET heartbeat = ?, progress = ? "
        "WHERE id = ? AND owner = ? AND status = ? RETURNING id",
        (now, progress, job_id, owner, "in-progress"),
    )
    return bool(rows)


def release_job(session: StoreSession, job_id: str, owner: str) -> None:
    """Give a job back to the queue (its owner is stopping); its attempt does not count."""
    session.execute(
        "UPDATE export_jobs SET status = ?, owner = NULL, heartbeat = NULL, "
        "attempts = attempts - 1 WHERE id = ? AND owner = ? AND status = ?",
        ("accepted", job_id, owner, "in-progress"),
    )


def finish_job(
    session: StoreSession,
    job_id: str,
    owner: str,
    status: str,
    manifest: bytes,
    expires: float,
) -> bool:
    rows = session.execute(
        "UPDATE export_jobs SET status = ?, manifest = ?, expires = ?, progress = NULL "
        "WHERE id = ? AND owner = ? AND status = ? RETURNING id",
        (status, manifest, expires, job_id, owner, "in-progress"),
    )
    return bool(rows)


def delete_job(session: StoreSession, job_id: str) -> bool:
    rows = session.execute("DELETE FROM export_jobs WHERE id = ? RETURNING id", (job_id,))
    return bool(rows)


def expired_jobs(session: StoreSession, now: float) -> list[str]:
    rows = session.execute(
        "SELECT id FROM export_jobs WHERE expires IS NOT NULL AND expires < ?", (now,)
    )
    return [str(row[0]) for row in rows]


def server_secret(session: StoreSession, name: str) -> bytes:
    """A random 32-byte secret shared by every node, made the first time it is asked for."""
    session.execute(
        "INSERT INTO server_secret (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (name, os.urandom(32)),
    )
    rows = session.execute("SELECT value FROM server_secret WHERE name = ?", (name,))
    return bytes(rows[0][0])


@dataclass(frozen=True, slots=True)
class Selection:
    """What a job reads of one resource type.

    `patients`: None for every resource of the type; otherwise only those in the compartment
    of these Patients (an empty tuple with `compartment` set: of any Patient). `filters` are
    `_typeFilter` searches, ORed. `with_patient`: each row carries the id of a Patient whose
    compartment holds it (the research view shifts dates per participant)."""

    resource_type: str
    until: str  # the job's transactionTime: later versions are left out
    since: str | None = None
    compartment: bool = False
    patients: tuple[str, ...] | None = None
    filters: tuple[SearchRequest, ...] = ()
    with_patient: bool = False
    ids: tuple[str, ...] | None = None  # only these resources


Row = tuple[int, str, bytes, str | None]  # seq, id, JSON, patient id


def read_batch(
    session: StoreSession, selection: Selection, after_seq: int, limit: int
) -> list[Row]:
    """The next `limit` live resources of the selection after `after_seq`, in write order:
    (seq, id, JSON, patient id or None)."""
    sql = _SQL()
    resource_type = selection.resource_type
    params = patient_reference_params(resource_type)
    marks = ", ".join("?" * len(params))
    probe = (
        f"FROM idx_reference p WHERE p.resource_type = r.resource_type AND p.id = r.id "
        f"AND p.param IN ({marks}) AND p.target_type = ?"
    )
    columns = "r.seq, r.id, r.data"
    select_args: list[object] = []
    if selection.with_patient and resource_type == "Patient":
        columns += ", r.id"
    elif selection.with_patient and params:
        columns += f", (SELECT MIN(p.target_id) {probe})"
        select_args.extend([*params, "Patient"])
    else:
        columns += ", NULL"
    where = ["r.resource_type = ?", "r.deleted = ?", "r.seq > ?", "r.last_updated <= ?"]
    sql.args.extend([resource_type, False, after_seq, selection.until])
    if selection.since is not None:
        where.append("r.last_updated > ?")
        sql.args.append(selection.since)
    if selection.compartment or selection.patients is not None:
        chosen = selection.patients or ()
        in_chosen = f" IN ({', '.join('?' * len(chosen))})" if chosen else ""
        if resource_type == "Patient" and chosen:
            where.append(f"r.id{in_chosen}")
            sql.args.extend(chosen)
        elif resource_type != "Patient":
            where.append(
                f"EXISTS (SELECT 1 {probe}{' AND p.target_id' + in_chosen if chosen else ''})"
            )
            sql.args.extend([*params, "Patient", *chosen])
    if selection.filters:
        parts = [f"({where_sql(sql, request, drive=False)})" for request in selection.filters]
        where.append(f"({' OR '.join(parts)})")
    if selection.ids is not None:
        where.append(f"r.id IN ({', '.join('?' * len(selection.ids)) or 'NULL'})")
        sql.args.extend(selection.ids)
    rows = session.execute(
        f"SELECT {columns} FROM resources r WHERE {' AND '.join(where)} ORDER BY r.seq LIMIT ?",
        [*select_args, *sql.args, limit],
    )
    return [(int(r[0]), str(r[1]), bytes(r[2]), None if r[3] is None else str(r[3])) for r in rows]


def latest_provenance(
    session: StoreSession, until: str, target_type: str, target_ids: Sequence[str]
) -> dict[str, int]:
    """For each target id, the write sequence of the newest live Provenance naming it."""
    marks = ", ".join("?" * len(target_ids))
    rows = session.execute(
        "SELECT x.target_id, MAX(r.seq) FROM idx_reference x JOIN resources r "
        "ON r.resource_type = x.resource_type AND r.id = x.id "
        "WHERE x.resource_type = ? AND x.param = ? AND x.target_type = ? "
        f"AND x.target_id IN ({marks}) AND r.deleted = ? AND r.last_updated <= ? "
        "GROUP BY x.target_id",
        ("Provenance", "target", target_type, *target_ids, False, until),
    )
    return {str(row[0]): int(row[1]) for row in rows}
