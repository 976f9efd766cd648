"""The ResourceStore seam: what services may ask of persistence, independent of the engine.

Versioned storage per https://hl7.org/fhir/R4/http.html#versioning: every write makes a new
version (deletes too); the current version is read, older ones are vread and history.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Staged:
    """A write made ready before the write lock: the resource's JSON around the version stamp
    (`meta.versionId`, `meta.lastUpdated`, known only under the lock) and its search index
    rows as the database stores them. Opaque to services: made by ResourceStore.stage."""

    resource_type: str
    id: str
    head: bytes  # the JSON up to the version stamp, inside `meta`
    tail: bytes  # the JSON after it
    rows: dict[str, list[tuple[Any, ...]]]  # index table -> rows
    sets: dict[int, list[tuple[Any, ...]]]  # token sets referenced by the rows -> members


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One stored version: its identity, bookkeeping and the exact JSON bytes served."""

    resource_type: str
    id: str
    version_id: int
    last_updated: str  # ISO 8601 instant, UTC
    deleted: bool
    data: bytes  # the resource JSON incl. meta; for a deleted version, a stub without content
    method: str = "PUT"  # POST, PUT, PATCH, DELETE: the interaction that made this version


class StoreSession(Protocol):
    """One database transaction; all writes inside it commit or roll back together."""

    dialect: str
    cursor_key: bytes  # seals search paging cursors; the same on every node

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version (possibly a deleted marker), or None if never written."""

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource | None:
        """One version of a resource, or None."""

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        since: str | None,
        count: int,
        before_seq: int | None = None,
    ) -> list[tuple[int, StoredResource]]:
        """Versions newest first with their write sequence; https://hl7.org/fhir/R4/http.html#history."""

    def history_count(
        self, resource_type: str | None, resource_id: str | None, since: str | None
    ) -> int:
        """How many versions history() would list without paging."""

    def put(
        self,
        resource: dict[str, Any],
        method: str,
        new: bool = False,
        staged: Staged | None = None,
    ) -> StoredResource:
        """Write the next version of resource (resourceType and id set); meta is assigned here.

        `new=True` promises the id is unused (a fresh uuid), which lets the write be batched;
        `staged` is the resource's ResourceStore.stage, when made beforehand. Every version
        written in one session gets the same `meta.lastUpdated`: the transaction's instant."""

    def flush(self) -> None:
        """Send batched writes to the database (reads and commit do this themselves)."""

    def delete(self, resource_type: str, resource_id: str) -> StoredResource:
        """Write a deleted version; the caller has checked that a live version exists."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run SQL written with `?` placeholders inside this transaction; rows out."""


class ResourceStore(Protocol):
    dialect: str

    def session(
        self, write: bool = False, *, scan: bool = False
    ) -> AbstractContextManager[StoreSession]:
        """A transaction; write sessions serialise writers so versions stay ordered. `scan`:
        a read of many rows once (an export), kept apart from the connections serving requests
        so that it does not fill their caches."""

    def stage(self, resource: dict[str, Any]) -> Staged:
        """The resource's JSON and search index rows, ready to store: CPU work that a writer
        does before taking the write lock and hands to StoreSession.put."""

    def close(self) -> None: ...
