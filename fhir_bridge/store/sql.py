"""The SQL engines behind ResourceStore: SQLite (embedded, WAL) and PostgreSQL (multi-node).

Both share every statement (written with `?`, rewritten to `%s` for psycopg); they differ in
connection set-up and the writer lock. Writers are serialised (SQLite: BEGIN IMMEDIATE behind a
process lock; PostgreSQL: a row lock on the write sequence) so that version numbers, the global
`seq` and conditional creates stay race-free.
"""

from __future__ import annotations

import fcntl
import math
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import chain
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from fhir_bridge.domain.cost import Limits
from fhir_bridge.domain.search_parameters import narrowed, resource_types, search_parameters
from fhir_bridge.errors import FHIRBridgeError, StatementTimeoutError, StoreError
from fhir_bridge.store.base import Staged, StoredResource
from fhir_bridge.store.indexing import last_updated_row
from fhir_bridge.store.schema import INDEX_TABLES, KEYED_ON_SQLITE, SCHEMA_VERSION, ddl
from fhir_bridge.store.staging import Indexer, Member, stage, token_stage

# A buffered new version: its stored form, what was staged (None: a deletion), its
# `_lastUpdated` index row
_Pending = tuple[StoredResource, Staged | None, tuple[Any, ...]]
CommitHook = Callable[["SQLSession", list[StoredResource]], Callable[[], None] | None]

# SQLite has no statement timeout: a progress handler looks at the clock every this many
# virtual machine instructions (about a millisecond) and interrupts a statement past its time.
PROGRESS_STEPS = 100_000
# Prepared statements a SQLite connection keeps; the search budget (domain/cost.py) bounds how
# large one can be, this how many are kept.
CACHED_STATEMENTS = 64
# Token sets a store remembers as stored (a forgotten one is inserted again, and skipped)
KNOWN_SETS_LIMIT = 65_536
# SQLite page cache of a connection serving requests: the index B-trees of a 500-entry Bundle
# stay in memory (measured +10 % ingest over the 2 MiB default)
CACHE_KIB = 65536
# ... and of one reading a whole table once (an export): a page is read once, so a large cache
# only holds memory (1,000,000 Observations exported: peak RSS +71 -> +9 MiB at 64 -> 4 MiB,
# 165k -> 150k resources/s in one run each)
SCAN_CACHE_KIB = 4096
# Rows of one multi-row INSERT on SQLite (see SQLSession._many)
CHUNK_ROWS = 32
# Pages of new SQLite files: 16 KiB over the default 4 KiB took a quarter less time under the
# write lock (bench/transaction_profile.py, three alternating runs: 79-96 -> 52-72 µs per
# resource; bench/instructions.py 971k -> 954k). The price is in searches of large databases,
# whose random look-ups read larger pages (bench/search_bench.py, 1,000,000 Observations, one
# run each, back to back: subject+code p50 1.01 -> 1.47 ms, p95 1.63 -> 2.29 ms; at 100,000
# no slower). Existing files keep theirs: a WAL database cannot change it.
SQLITE_PAGE_SIZE = 16384
_COLUMNS = "resource_type, id, version_id, last_updated, deleted, data, method"
_ROW_COLUMNS = "resource_type, id, version_id, last_updated, deleted, seq, data, method"
_ROW = f"({_ROW_COLUMNS})"
# Every version: the current ones (`resources`) and the superseded ones (`resource_versions`)
_VERSION_TABLES = ("resources", "resource_versions")


def now_instant() -> str:
    """Current time as a FHIR instant with microseconds, UTC."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _history_filter(
    resource_type: str | None, resource_id: str | None, since: str | None, before_seq: int | None
) -> tuple[str, list[object]]:
    """A WHERE clause over either table of versions."""
    where: list[str] = []
    params: list[object] = []
    for column, value in (
        ("resource_type = ?", resource_type),
        ("id = ?", resource_id),
        ("last_updated >= ?", since),
        ("seq < ?", before_seq),
    ):
        if value is not None:
            where.append(column)
            params.append(value)
    return (f"WHERE {' AND '.join(where)}" if where else ""), params


def _values(s: StoredResource, seq: int, pg: bool) -> tuple[Any, ...]:
    """A stored version as a row of _ROW's columns. SQLite gets `deleted` as an int: it binds
    exact ints directly, a bool only after a look-up for an adapter (3.3k instructions a value
    in callgrind's profile of bench/instructions.py)."""
    deleted = s.deleted if pg else int(s.deleted)
    return (s.resource_type, s.id, s.version_id, s.last_updated, deleted, seq, s.data, s.method)


def _row(row: Sequence[Any]) -> StoredResource:
    return StoredResource(
        resource_type=row[0],
        id=row[1],
        version_id=int(row[2]),
        last_updated=row[3],
        deleted=bool(row[4]),
        data=bytes(row[5]),
        method=row[6],
    )


class SQLSession:
    """One transaction on one connection; implements StoreSession.

    Writes of new resources are buffered and flushed as one executemany per table before the
    next read and at commit: a transaction Bundle of 500 creates costs a handful of statements.
    """

    def __init__(
        self, conn: Any, dialect: str, indexer: Indexer, cursor_key: bytes, known_sets: set[int]
    ) -> None:
        self._conn = conn
        self.dialect = dialect
        self.cursor_key = cursor_key
        self._indexer = indexer
        self._pg = dialect == "postgresql"
        self._pending: list[_Pending] = []
        self._instant: tuple[str, tuple[Any, ...]] | None = None
        self._known_sets = known_sets  # token sets stored by committed sessions
        self.statement_timeout = math.inf  # seconds; the store sets its own
        self.new_sets: set[int] = set()  # token sets this session stores
        self.written: list[StoredResource] = []  # versions this session wrote, in order

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        self.flush()
        return self._run(sql, params)

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        conn = self._conn
        if self._pg:
            try:
                cur = conn.execute(sql.replace("?", "%s"), tuple(params))
            except Exception as exc:
                if getattr(exc, "sqlstate", None) == "57014":  # query_canceled: the timeout
                    raise _timed_out(self.statement_timeout) from exc
                raise
            return list(cur.fetchall()) if cur.description else []
        conn.deadline = time.monotonic() + self.statement_timeout
        try:
            cur = conn.execute(sql, tuple(params))
            return list(cur.fetchall()) if cur.description else []  # fetching runs it too
        except sqlite3.OperationalError as exc:
            if time.monotonic() > conn.deadline:
                raise _timed_out(self.statement_timeout) from exc
            raise
        finally:
            conn.deadline = math.inf

    def _many(
        self, table: str, rows: list[tuple[Any, ...]], columns: str = "", upsert: bool = False
    ) -> None:
        """Insert rows (into `columns`, default all in table order): on SQLite multi-row
        INSERTs, on PostgreSQL one COPY (bench/ingest_bench.py on PostgreSQL: 1,526 -> 1,951
        resources/s over executemany). `upsert`: rows whose key exists are skipped (no COPY
        then)."""
        if not rows:
            return
        marks = f"({', '.join('?' * len(rows[0]))})"
        conflict = " ON CONFLICT DO NOTHING" if upsert else ""
        if not self._pg:
            # SQLite: CHUNK_ROWS rows a statement, the rest one a statement (bench/instructions.py
            # with the deleted flag below: 1,203k -> 1,126k instructions per resource).
            # OR ROLLBACK: a failing row ends the whole transaction, as any error does here
            # (SQLStore.session), so SQLite keeps no statement journal to undo one statement.
            # A multi-row INSERT that may abort alone copies each page it changes there first:
            # 55 KiB per MADRS score into temporary files, 6.6x what the write-ahead log got
            insert = f"INSERT OR ROLLBACK INTO {table} {columns} VALUES"
            whole = len(rows) - len(rows) % CHUNK_ROWS
            if whole:
                values = ", ".join([marks] * CHUNK_ROWS)
                chunks = [
                    tuple(chain.from_iterable(rows[n : n + CHUNK_ROWS]))
                    for n in range(0, whole, CHUNK_ROWS)
                ]
                self._conn.executemany(f"{insert} {values}{conflict}", chunks)
            if whole < len(rows):
                self._conn.executemany(f"{insert} {marks}{conflict}", rows[whole:])
        elif upsert:
            with self._conn.cursor() as cur:
                statement = f"INSERT INTO {table} {columns} VALUES {marks}{conflict}"
                cur.executemany(statement.replace("?", "%s"), rows)
        else:
            with self._conn.cursor() as cur:
                with cur.copy(f"COPY {table} {columns} FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)

    def read(self, resource_type: str, resource_id: str) -> StoredResource | None:
        rows = self.execute(
            f"SELECT {_COLUMNS} FROM resources WHERE resource_type = ? AND id = ?",
            (resource_type, resource_id),
        )
        return _row(rows[0]) if rows else None

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource | None:
        rows = self.execute(
            " UNION ALL ".join(
                f"SELECT {_COLUMNS} FROM {table} "
                "WHERE resource_type = ? AND id = ? AND version_id = ?"
                for table in _VERSION_TABLES
            ),
            (resource_type, resource_id, version_id) * 2,
        )
        return _row(rows[0]) if rows else None

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        since: str | None,
        count: int,
        before_seq: int | None = None,
    ) -> list[tuple[int, StoredResource]]:
        clause, params = _history_filter(resource_type, resource_id, since, before_seq)
        union = " UNION ALL ".join(
            f"SELECT {_COLUMNS}, seq FROM {table} {clause}" for table in _VERSION_TABLES
        )
        # one resource's versions in version order: the primary key, not the type's seq index
        order = "seq" if resource_id is None else "version_id"
        rows = self.execute(f"{union} ORDER BY {order} DESC LIMIT ?", (*params, *params, count))
        return [(int(r[7]), _row(r)) for r in rows]

    def history_count(
        self, resource_type: str | None, resource_id: str | None, since: str | None
    ) -> int:
        clause, params = _history_filter(resource_type, resource_id, since, None)
        counts = [f"(SELECT COUNT(*) FROM {table} {clause})" for table in _VERSION_TABLES]
        return int(self.execute(f"SELECT {' + '.join(counts)}", params * 2)[0][0])

    def _reserve_seq(self, count: int) -> int:
        """Reserve `count` write sequence numbers; returns the first."""
        rows = self._run(
            "UPDATE write_seq SET value = value + ? WHERE id = 1 RETURNING value", (count,)
        )
        return int(rows[0][0]) - count + 1

    def _stamp(self) -> tuple[str, tuple[Any, ...]]:
        """The session's instant (meta.lastUpdated of every version it writes) and its
        `_lastUpdated` index values (param, low, high)."""
        if self._instant is None:
            instant = now_instant()
            row = last_updated_row(instant)
            self._instant = instant, (row.param, row.low, row.high)
        return self._instant

    def put(
        self,
        resource: dict[str, Any],
        method: str,
        new: bool = False,
        staged: Staged | None = None,
    ) -> StoredResource:
        """`new=True` promises the id was never used (a fresh uuid): no look-up, buffered insert."""
        staged = staged or stage(resource, self._indexer)
        resource_type, resource_id = staged.resource_type, staged.id
        current = None if new else self.read(resource_type, resource_id)
        version_id = current.version_id + 1 if current else 1
        instant, updated = self._stamp()
        data = b"".join(
            (
                staged.head,
                b'"versionId":"%d","lastUpdated":"' % version_id,
                instant.encode(),
                b'"',
                staged.tail,
            )
        )
        stored = StoredResource(
            resource_type, resource_id, version_id, instant, False, data, method
        )
        row = (resource_type, resource_id, *updated)
        self.written.append(stored)
        if current is None:
            self._pending.append((stored, staged, row))
        else:
            self._write(stored)
            self._reindex(resource_type, resource_id, staged, row)
        return stored

    def delete(self, resource_type: str, resource_id: str) -> StoredResource:
        current = self.read(resource_type, resource_id)
        version_id = current.version_id + 1 if current else 1
        instant, _ = self._stamp()
        stub = {
            "resourceType": resource_type,
            "id": resource_id,
            "meta": {"versionId": str(version_id), "lastUpdated": instant},
        }
        stored = StoredResource(
            resource_type, resource_id, version_id, instant, True, orjson.dumps(stub), "DELETE"
        )
        self.written.append(stored)
        if current is None:
            self._pending.append((stored, None, ()))
        else:
            self._write(stored)
            self._reindex(resource_type, resource_id, None, ())
        return stored

    def flush(self) -> None:
        """Insert the buffered new resources and their index rows."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        first = self._reserve_seq(len(pending))
        rows = [_values(s, first + n, self._pg) for n, (s, _, _) in enumerate(pending)]
        self._many("resources", rows, _ROW)
        staged = [(item, updated) for _, item, updated in pending if item is not None]
        self._insert_index([item for item, _ in staged], [updated for _, updated in staged])

    def _insert_index(self, staged: list[Staged], updated: list[tuple[Any, ...]]) -> None:
        """Index rows of staged versions, with their `_lastUpdated` rows; token sets not
        stored yet get their members."""
        members = []
        for item in staged:
            for set_id, rows in item.sets.items():
                if set_id not in self._known_sets and set_id not in self.new_sets:
                    self.new_sets.add(set_id)
                    members.extend(rows)
        self._many("token_set_member", members, upsert=True)
        for table in INDEX_TABLES:
            values = [row for item in staged for row in item.rows.get(table, ())]
            keyed = not self._pg and table in KEYED_ON_SQLITE  # equal rows are one row
            self._many(table, [*values, *updated] if table == "idx_date" else values, upsert=keyed)

    def _write(self, stored: StoredResource) -> None:
        """A new version of a stored resource: the current one moves to resource_versions."""
        row = _values(stored, self._reserve_seq(1), self._pg)
        key = row[:2]
        self._run(
            f"INSERT INTO resource_versions {_ROW} SELECT {_ROW_COLUMNS} FROM resources "
            "WHERE resource_type = ? AND id = ?",
            key,
        )
        self._run(
            "UPDATE resources SET version_id = ?, last_updated = ?, deleted = ?, seq = ?, "
            "data = ?, method = ? WHERE resource_type = ? AND id = ?",
            (*row[2:], *key),
        )

    def _reindex(
        self,
        resource_type: str,
        resource_id: str,
        staged: Staged | None,
        updated: tuple[Any, ...],
    ) -> None:
        for table in INDEX_TABLES:
            self._run(
                f"DELETE FROM {table} WHERE resource_type = ? AND id = ?",
                (resource_type, resource_id),
            )
        if staged is not None:
            self._insert_index([staged], [updated])


class SQLStore:
    """ResourceStore over SQLite or PostgreSQL, chosen by the database URL."""

    def __init__(
        self,
        database_url: str,
        indexer: Indexer,
        pool_size: int = 8,
        statement_timeout: float = Limits.statement_timeout_seconds,
    ) -> None:
        self._url = database_url
        self._statement_timeout = statement_timeout
        self._indexer = indexer
        scheme = urlsplit(database_url).scheme
        if scheme == "sqlite":
            self.dialect = "sqlite"
        elif scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
        else:
            raise StoreError(f"Unsupported database URL scheme '{scheme}'")
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._scan_pool: queue.LifoQueue[Any] = queue.LifoQueue()  # see session(scan=True)
        self._pool_size = pool_size
        self._write_lock = threading.Lock()
        self._known_sets: set[int] = set()
        self._file_lock = _FileLock.for_url(database_url) if self.dialect == "sqlite" else None
        self.cursor_key = b""  # read from the database by _migrate
        # Called before a write session that wrote resources commits, in that session (the
        # audit trail's Provenance and AuditEvent); what it returns is called after the commit.
        self.commit_hook: CommitHook | None = None
        self._checkpointer: _Checkpointer | None = None
        try:
            self._migrate()
        except Exception:
            self.close()
            raise
        if self.dialect == "sqlite" and _sqlite_path(database_url) != ":memory:":
            self._checkpointer = _Checkpointer(database_url)

    def _connect(self, cache_kib: int = 0) -> Any:
        try:
            if self.dialect == "sqlite":
                return _connect_sqlite(self._url, cache_kib or CACHE_KIB)
            return _connect_postgres(self._url, self._statement_timeout)
        except Exception as exc:  # sqlite3, OS or psycopg errors alike
            raise StoreError("Could not open the database") from exc

    def _migrate(self) -> None:
        # A database already at this schema gets no DDL: DDL locks tables, and a node still
        # starting would deadlock with one already writing (seen with two PostgreSQL nodes).
        with self.session(write=False, migrate=True) as session:
            version = self._schema_version(session)
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(
                    f"The database has schema {version}, newer than this server's "
                    f"{SCHEMA_VERSION}: upgrade the server"
                )
            if version != SCHEMA_VERSION:
                self._create_schema(session, version)
            rows = session.execute(
                "SELECT value FROM server_secret WHERE name = ?", ("cursor_key",)
            )
            self.cursor_key = bytes(rows[0][0])

    def _schema_version(self, session: SQLSession) -> int | None:
        """The database's schema version; None for a new database."""
        exists = (
            "SELECT to_regclass('schema_info') IS NOT NULL"
            if self.dialect == "postgresql"
            else "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'schema_info'"
        )
        if not session.execute(exists)[0][0]:
            return None
        found = session.execute("SELECT version FROM schema_info")
        return int(found[0][0]) if found else None

    def _create_schema(self, session: SQLSession, version: int | None) -> None:
        """Create what is missing; token rows of schema 1 and 2 are converted into token sets,
        SQLite index tables of schema 1 to 3 are rebuilt as WITHOUT ROWID tables, the rows of
        current versions in resource_versions (schema 1 to 4) and the reference rows that
        narrowed parameters share with their base (1 to 5) are dropped, reference rows of
        absolute URLs are made again (1 to 6; see schema.py)."""
        rebuilt = _set_aside_rowid_tables(session) if version is not None and version < 4 else []
        for statement in ddl(self.dialect):
            session.execute(statement)
        for table in rebuilt:
            session.execute(f"INSERT OR IGNORE INTO {table} SELECT * FROM {table}_v3")
            session.execute(f"DROP TABLE {table}_v3")
        if version is not None and version < 3:
            _convert_token_rows(session)
        if version is not None and version < 5:
            session.execute(
                "DELETE FROM resource_versions WHERE (resource_type, id, version_id) IN "
                "(SELECT resource_type, id, version_id FROM resources)"
            )
        if version is not None and version < 6:
            _drop_covered_reference_rows(session)
        if version is not None and version < 7:
            _reindex_absolute_references(session, self._indexer)
        if version is None:
            session.execute("DELETE FROM schema_info")
            session.execute("INSERT INTO schema_info (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            session.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION,))
        session.execute("INSERT INTO write_seq (id, value) VALUES (1, 0) ON CONFLICT DO NOTHING")
        session.execute(
            "INSERT INTO server_secret (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
            ("cursor_key", os.urandom(32)),
        )

    def stage(self, resource: dict[str, Any]) -> Staged:
        return stage(resource, self._indexer)

    @contextmanager
    def session(
        self, write: bool = False, migrate: bool = False, *, scan: bool = False
    ) -> Iterator[SQLSession]:
        # SQLite's busy handler polls with sleeps of up to 100 ms; writers queue on locks
        # instead (threads of this process, then processes on the file), which hand over the
        # moment the holder commits.
        locks = [self._write_lock, self._file_lock] if self.dialect == "sqlite" else []
        held = [lock for lock in locks if lock is not None] if write or migrate else []
        for lock in held:
            lock.acquire()
        try:
            with self._transaction(write, migrate, scan) as session:
                yield session
        finally:
            for lock in reversed(held):
                lock.release()

    @contextmanager
    def _transaction(self, write: bool, migrate: bool, scan: bool) -> Iterator[SQLSession]:
        pool = self._scan_pool if scan else self._pool
        try:
            conn = pool.get_nowait()
        except queue.Empty:
            conn = self._connect(SCAN_CACHE_KIB if scan else CACHE_KIB)
        session = SQLSession(conn, self.dialect, self._indexer, self.cursor_key, self._known_sets)
        session.statement_timeout = self._statement_timeout
        try:
            if self.dialect == "sqlite":
                conn.execute("BEGIN IMMEDIATE" if write or migrate else "BEGIN")
            elif migrate:
                # one migrating process at a time when several nodes start together
                session.execute("SELECT pg_advisory_xact_lock(4242)")
            elif write:
                session.execute("SELECT value FROM write_seq WHERE id = 1 FOR UPDATE")
            yield session
            hook = self.commit_hook if session.written else None
            committed = hook(session, list(session.written)) if hook is not None else None
            session.flush()
            conn.commit() if self.dialect == "postgresql" else conn.execute("COMMIT")
            if committed is not None:
                committed()
            if len(self._known_sets) > KNOWN_SETS_LIMIT:  # identifiers make sets of their own
                self._known_sets.clear()
            self._known_sets.update(session.new_sets)
        except FHIRBridgeError:
            self._release(conn, pool, rollback=True)
            raise
        except Exception as exc:
            self._release(conn, pool, rollback=True)
            if _is_driver_error(exc):
                raise StoreError("The database failed to complete the request") from exc
            raise
        else:
            self._release(conn, pool, rollback=False)

    def _release(self, conn: Any, pool: queue.LifoQueue[Any], rollback: bool) -> None:
        try:
            if rollback and self.dialect == "postgresql":
                conn.rollback()
            elif rollback and conn.in_transaction:  # INSERT OR ROLLBACK may have ended it
                conn.execute("ROLLBACK")
        except Exception:  # a broken connection: drop it rather than pool it
            conn.close()
            return
        if pool.qsize() < self._pool_size:
            pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        for pool in (self._pool, self._scan_pool):
            while not pool.empty():
                pool.get_nowait().close()
        if self._file_lock is not None:
            self._file_lock.close()


def _set_aside_rowid_tables(session: SQLSession) -> list[str]:
    """On SQLite, rename the index tables that schema 4 keys WITHOUT ROWID to `<name>_v3`
    (their indexes dropped), for _create_schema to copy; returns their names."""
    if session.dialect != "sqlite":
        return []
    found = {
        name: sql
        for name, sql in session.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    }
    rebuilt = [t for t in KEYED_ON_SQLITE if t in found and "WITHOUT ROWID" not in found[t]]
    for table in rebuilt:
        for index in ("match", "probe"):
            session.execute(f"DROP INDEX IF EXISTS {table}_{index}")
        session.execute(f"ALTER TABLE {table} RENAME TO {table}_v3")
    return rebuilt


def _drop_covered_reference_rows(session: SQLSession) -> None:
    """Rows of narrowed reference parameters that their base parameter's rows hold."""
    for resource_type in resource_types():
        for code in search_parameters(resource_type):
            found = narrowed(resource_type, code)
            if found is not None:
                session.execute(
                    "DELETE FROM idx_reference WHERE resource_type = ? AND param = ? "
                    "AND target_type = ?",
                    (resource_type, code, found[1]),
                )


def _reindex_absolute_references(session: SQLSession, indexer: Indexer, batch: int = 1000) -> None:
    """The reference rows of the resources that hold an absolute URL reference with a local
    type and id (schema 6 and older gave it one), made again, `batch` resources at a time.
    Row values `(a, b) > (?, ?)` let both databases seek to the next batch: with `a > ? OR
    ...` SQLite scanned from the start every time (a one-off measurement of this migration
    over 1,000,000 resources: 124 s -> 35 s)."""
    after: tuple[str, str] = ("", "")
    while True:
        # index rows are only ever those of live resources: each owner's data is its JSON
        owners = session.execute(
            "SELECT r.resource_type, r.id, r.data FROM resources r "
            "WHERE (r.resource_type, r.id) IN (SELECT DISTINCT resource_type, id "
            "FROM idx_reference WHERE url IS NOT NULL AND target_id IS NOT NULL "
            "AND (resource_type, id) > (?, ?) ORDER BY resource_type, id LIMIT ?) "
            "ORDER BY r.resource_type, r.id",
            (after[0], after[1], batch),
        )
        for resource_type, resource_id, data in owners:
            session.execute(
                "DELETE FROM idx_reference WHERE resource_type = ? AND id = ?",
                (resource_type, resource_id),
            )
            rows = stage(orjson.loads(bytes(data)), indexer).rows.get("idx_reference", [])
            session._many("idx_reference", rows)
        if len(owners) < batch:
            break
        after = (str(owners[-1][0]), str(owners[-1][1]))


def _convert_token_rows(session: SQLSession, batch: int = 1000) -> None:
    """Schema 1 and 2 `idx_token` rows (one per value) into token sets, `batch` resources at
    a time; the old table is dropped."""
    after: tuple[str, str] = ("", "")
    while True:
        owners = session.execute(
            "SELECT DISTINCT resource_type, id FROM idx_token WHERE (resource_type, id) > (?, ?) "
            "ORDER BY resource_type, id LIMIT ?",
            (after[0], after[1], batch),
        )
        if not owners:
            break
        last = owners[-1]
        rows = session.execute(
            "SELECT resource_type, id, param, system, code, text FROM idx_token "
            "WHERE (resource_type, id) > (?, ?) AND (resource_type, id) <= (?, ?) "
            "ORDER BY resource_type, id, param",
            (after[0], after[1], last[0], last[1]),
        )
        staged: dict[tuple[str, str], dict[str, dict[Member, None]]] = {}
        for resource_type, resource_id, param, system, code, text in rows:
            by_param = staged.setdefault((resource_type, resource_id), {})
            by_param.setdefault(param, {})[(system, code, text)] = None
        session._insert_index([token_stage(*key, by_param) for key, by_param in staged.items()], [])
        after = (str(last[0]), str(last[1]))
    session.execute("DROP TABLE idx_token")


class _FileLock:
    """The writer lock of one SQLite file, shared by every process writing it (flock)."""

    def __init__(self, path: str) -> None:
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # e.g. the database's folder does not exist
            raise StoreError("Could not open the database") from exc

    @classmethod
    def for_url(cls, url: str) -> _FileLock | None:
        path = _sqlite_path(url)
        return None if path == ":memory:" else cls(f"{path}-writer.lock")

    def acquire(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Checkpointer:
    """Copies SQLite's write-ahead log into the database file in the background, so that no
    write transaction does it under the write lock (bench/transaction_profile.py: 132 -> 121 µs
    per resource under the lock). PASSIVE checkpoints neither wait for nor block writers; the
    connections' wal_autocheckpoint stays as the backstop should this thread fall behind."""

    INTERVAL = 1.0  # seconds

    def __init__(self, url: str) -> None:
        self._url = url
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = _connect_sqlite(self._url)
        try:
            while not self._stopping.wait(self.INTERVAL):
                checkpoint(conn)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def checkpoint(conn: sqlite3.Connection) -> tuple[int, int]:
    """One PASSIVE checkpoint: (frames in the log, frames copied into the database)."""
    try:
        _, logged, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error:  # e.g. the disk is full: the writers' autocheckpoint is the backstop
        return -1, -1
    return int(logged), int(copied)


def _is_driver_error(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    module = type(exc).__module__
    return module.startswith("psycopg")


def _sqlite_path(url: str) -> str:
    return url.split("sqlite:///", 1)[1] if "sqlite:///" in url else ":memory:"


def _timed_out(seconds: float) -> StatementTimeoutError:
    return StatementTimeoutError(
        f"The database statement ran longer than {seconds:g} s and was cancelled"
    )


class _SQLiteConnection(sqlite3.Connection):
    """A SQLite connection whose statements SQLSession._run gives a deadline; the progress
    handler interrupts one past it (the driver then raises OperationalError)."""

    deadline = math.inf

    def expired(self) -> bool:
        return time.monotonic() > self.deadline


def _connect_sqlite(url: str, cache_kib: int = 65536) -> _SQLiteConnection:
    path = _sqlite_path(url)
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=60,
        cached_statements=CACHED_STATEMENTS,
        factory=_SQLiteConnection,
    )
    conn.set_progress_handler(conn.expired, PROGRESS_STEPS)
    conn.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # a new file only; WAL keeps it after
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before the client hears 201 (NORMAL may lose the last commits
    # on power loss). The cost is one fsync of the log per transaction (bench/rest_bench.py
    # with FULL: 434 single creates/s). Checkpoints, which copy the log into the database and
    # fsync both, run in the background (_Checkpointer); a writer runs one only past 64 MiB of
    # log, should the background fall behind.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_autocheckpoint=16384")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA cache_size=-{cache_kib}")
    return conn


def _connect_postgres(url: str, statement_timeout: float) -> Any:
    import psycopg

    parts = urlsplit(url)
    schema = parse_qs(parts.query).get("schema", [None])[0]
    conninfo = url.split("?", 1)[0]
    conn = psycopg.connect(conninfo)
    # a runaway statement is cancelled rather than left running after its client gave up
    conn.execute(f"SET statement_timeout = {max(1, int(statement_timeout * 1000))}")
    if schema:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
            raise StoreError("Invalid schema name in the database URL")
        # IF NOT EXISTS is no guard against another node creating it at the same moment
        # (a unique violation in pg_namespace): nodes starting together take turns
        conn.execute("SELECT pg_advisory_xact_lock(4241)")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(f"SET search_path TO {schema}")
    conn.commit()  # settings made inside a transaction would vanish with its rollback
    return conn
