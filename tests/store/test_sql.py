"""The store contract, run on SQLite and PostgreSQL alike."""

from __future__ import annotations

import random
import sqlite3
import string
import threading
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import InvalidRequestError, StatementTimeoutError, StoreError
from fhir_bridge.store.indexing import extract_index
from fhir_bridge.store.schema import KEYED_ON_SQLITE, SCHEMA_VERSION
from fhir_bridge.store.search import find_ids
from fhir_bridge.store.sql import CHUNK_ROWS, SQLITE_PAGE_SIZE, SQLStore, _Checkpointer, checkpoint

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}


def test_put_assigns_version_and_meta(store: SQLStore) -> None:
    with store.session(write=True) as session:
        first = session.put(dict(PATIENT), "POST")
        second = session.put({**PATIENT, "gender": "male"}, "PUT")
    assert (first.version_id, second.version_id) == (1, 2)
    body = orjson.loads(second.data)
    assert body["meta"]["versionId"] == "2"
    assert body["meta"]["lastUpdated"] == second.last_updated
    assert list(body)[:3] == ["resourceType", "id", "meta"]


def test_read_returns_current_and_vread_each_version(store: SQLStore) -> None:
    with store.session(write=True) as session:
        session.put(dict(PATIENT), "POST")
        session.put({**PATIENT, "gender": "male"}, "PUT")
    with store.session() as session:
        current = session.read("Patient", "p1")
        v1 = session.vread("Patient", "p1", 1)
        missing = session.vread("Patient", "p1", 3)
    assert current is not None and orjson.loads(current.data)["gender"] == "male"
    assert v1 is not None and orjson.loads(v1.data)["gender"] == "female"
    assert missing is None


def test_each_version_is_stored_once_and_served_by_vread_and_history(store: SQLStore) -> None:
    with store.session(write=True) as session:
        session.put(dict(PATIENT), "POST")
        session.put({**PATIENT, "gender": "male"}, "PUT")
        session.put({**PATIENT, "gender": "other"}, "PUT")
    with store.session() as session:
        sizes = session.execute(
            "SELECT version_id, length(data) FROM resource_versions ORDER BY version_id"
        )
        genders = [
            orjson.loads(stored.data)["gender"]
            for _, stored in session.history("Patient", "p1", None, 10)
        ]
        v3 = session.vread("Patient", "p1", 3)
    # the current version is in `resources` only; superseded ones moved here
    assert [(int(v), int(n) > 0) for v, n in sizes] == [(1, True), (2, True)]
    assert genders == ["other", "male", "female"]
    assert v3 is not None and orjson.loads(v3.data)["gender"] == "other"


def test_delete_writes_a_deleted_version(store: SQLStore) -> None:
    with store.session(write=True) as session:
        session.put(dict(PATIENT), "POST")
        deleted = session.delete("Patient", "p1")
    with store.session() as session:
        current = session.read("Patient", "p1")
        history = session.history("Patient", "p1", None, 10)
    assert deleted.deleted and deleted.version_id == 2
    assert current is not None and current.deleted
    assert [(h.version_id, h.method) for _, h in history] == [(2, "DELETE"), (1, "POST")]


def test_failed_session_rolls_back_every_write(store: SQLStore) -> None:
    with pytest.raises(InvalidRequestError):
        with store.session(write=True) as session:
            session.put(dict(PATIENT), "POST")
            session.put({"resourceType": "Patient", "id": "p2"}, "POST")
            raise InvalidRequestError("last entry failed")
    with store.session() as session:
        assert session.read("Patient", "p1") is None
        assert session.read("Patient", "p2") is None
        assert session.history(None, None, None, 10) == []


def test_nodes_opening_one_new_database_at_once_all_start(database_url: str) -> None:
    # seen on PostgreSQL: CREATE SCHEMA IF NOT EXISTS at the same moment, a unique violation
    urls = [f"{database_url}_{n}" for n in range(5)]  # a new database (schema, file) each
    failures: list[Exception] = []

    def start(url: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            SQLStore(url, extract_index).close()
        except Exception as exc:
            failures.append(exc)

    try:
        for url in urls:
            barrier = threading.Barrier(3)
            nodes = [threading.Thread(target=start, args=(url, barrier)) for _ in range(3)]
            for node in nodes:
                node.start()
            for node in nodes:
                node.join()
    finally:
        if database_url.startswith("postgresql"):
            base, schema = database_url.split("?schema=")
            with psycopg.connect(base, autocommit=True) as conn:
                for n in range(len(urls)):
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema}_{n} CASCADE")
    assert failures == []


def test_history_pages_by_sequence(store: SQLStore) -> None:
    with store.session(write=True) as session:
        for n in range(5):
            session.put({"resourceType": "Patient", "id": f"p{n}"}, "POST")
    with store.session() as session:
        first = session.history("Patient", None, None, 2)
        second = session.history("Patient", None, None, 2, before_seq=first[-1][0])
    assert [s.id for _, s in first] == ["p4", "p3"]
    assert [s.id for _, s in second] == ["p2", "p1"]


def test_concurrent_writers_lose_no_version(store: SQLStore) -> None:
    with store.session(write=True) as session:
        session.put(dict(PATIENT), "POST")
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(10):
                with store.session(write=True) as session:
                    session.put({**PATIENT, "gender": "other"}, "PUT")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.session() as session:
        current = session.read("Patient", "p1")
        versions = session.history("Patient", "p1", None, 100)
    assert current is not None and current.version_id == 41
    assert sorted(s.version_id for _, s in versions) == list(range(1, 42))


def test_unknown_database_scheme_is_refused() -> None:
    with pytest.raises(StoreError):
        SQLStore("mysql://localhost/x", lambda resource: None)  # type: ignore[arg-type,return-value]


def test_an_sqlite_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SQLStore(f"sqlite:///{tmp_path / 'missing-dir' / 'fhir.db'}", extract_index)


def test_a_database_of_a_newer_schema_is_refused(store: SQLStore, database_url: str) -> None:
    with store.session(write=True) as session:
        session.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        SQLStore(database_url, extract_index)


def test_a_checkpoint_copies_the_whole_log_into_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fhir.db'}"
    store = SQLStore(url, extract_index)
    with store.session(write=True) as session:
        session.put(PATIENT, "PUT")
    conn = sqlite3.connect(tmp_path / "fhir.db")
    logged, copied = checkpoint(conn)
    assert logged > 0 and copied == logged
    conn.close()
    store.close()


def test_closing_a_store_stops_its_background_checkpoints(tmp_path: Path) -> None:
    def checkpointers() -> int:
        return sum(t.name == "sqlite-checkpoint" for t in threading.enumerate())

    before = checkpointers()
    store = SQLStore(f"sqlite:///{tmp_path / 'fhir.db'}", extract_index)
    assert checkpointers() == before + 1
    store.close()
    assert checkpointers() == before


def test_the_log_reaches_the_database_file_without_a_writer_checkpointing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Checkpointer, "INTERVAL", 0.01)
    path = tmp_path / "fhir.db"
    store = SQLStore(f"sqlite:///{path}", extract_index)
    time.sleep(0.1)  # the schema's pages are checkpointed
    size = path.stat().st_size
    with store.session(write=True) as session:  # far below wal_autocheckpoint
        for n in range(200):
            session.put({**PATIENT, "id": f"p{n}", "name": [{"family": "x" * 500}]}, "PUT")
    deadline = time.monotonic() + 5
    while path.stat().st_size <= size and time.monotonic() < deadline:
        time.sleep(0.01)
    grown = path.stat().st_size > size  # read before close(): the last close checkpoints
    store.close()
    assert grown


def test_values_too_long_for_an_index_entry_are_stored_and_found_exactly(
    store: SQLStore,
) -> None:
    # PostgreSQL refuses B-tree entries over 2,704 bytes; random text does not compress
    rng = random.Random(5)
    long = "".join(rng.choice(string.ascii_letters) for _ in range(3000))
    twin = long[:2000] + "x" * 1000  # the same first 2,000 characters
    patient = {
        "resourceType": "Patient",
        "id": "long",
        "identifier": [{"system": "https://site.example/mrn", "value": long}],
        "name": [{"family": long}],
    }
    with store.session(write=True) as session:
        session.put(patient, "PUT")
    with store.session() as session:

        def ids(query: str) -> list[str]:
            return find_ids(session.execute, "Patient", query)

        assert ids(f"identifier={long}") == ["long"]
        assert ids(f"identifier={twin}") == []
        assert ids(f"family={long[:50]}") == ["long"]
        assert ids(f"family:exact={long}") == ["long"]
        assert ids(f"family:exact={twin}") == []


ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"


def madrs(oid: str) -> dict[str, object]:
    """A score with the 10 item codes every MADRS score carries."""
    items = [
        {"code": {"coding": [{"system": ASSESSMENT, "code": f"madrs-{n}"}]}} for n in range(1, 11)
    ]
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": ASSESSMENT, "code": "madrs-total"}]},
        "component": items,
    }


def item_search(store: SQLStore) -> list[str]:
    with store.session() as session:
        return find_ids(session.execute, "Observation", f"component-code={ASSESSMENT}|madrs-7")


def test_equal_token_values_are_stored_once_as_a_set_shared_by_resources(store: SQLStore) -> None:
    for oid in ("o1", "o2"):
        with store.session(write=True) as session:
            session.put(madrs(oid), "POST")
    with store.session() as session:
        members = session.execute("SELECT count(*) FROM token_set_member")[0][0]
        sets = session.execute("SELECT count(*) FROM idx_token_set")[0][0]
    assert members == 12  # status, code and the 10 item codes, once
    assert sets == 6  # status, code, component-code: one row each per resource
    assert item_search(store) == ["o1", "o2"]


def test_buffered_creates_past_whole_insert_chunks_are_all_stored_and_indexed(
    store: SQLStore,
) -> None:
    count = 2 * CHUNK_ROWS + 5  # two multi-row INSERTs on SQLite, then five single rows
    with store.session(write=True) as session:
        for n in range(count):
            session.put(madrs(f"o{n:03d}"), "POST", new=True)
    with store.session() as session:
        stored = session.execute("SELECT id, version_id, deleted FROM resources ORDER BY id")
    assert stored == [(f"o{n:03d}", 1, False) for n in range(count)]
    assert item_search(store) == [f"o{n:03d}" for n in range(count)]


def test_a_row_the_database_refuses_rolls_back_the_whole_session(store: SQLStore) -> None:
    # the last multi-row INSERT fails (a duplicate key) after the first one went in
    ids = [f"o{n:03d}" for n in range(2 * CHUNK_ROWS - 1)] + ["o000"]
    with pytest.raises(StoreError):
        with store.session(write=True) as session:
            for resource_id in ids:
                session.put(madrs(resource_id), "POST", new=True)
    with store.session(write=True) as session:  # the store goes on as before
        session.put(madrs("o1"), "POST", new=True)
    with store.session() as session:
        assert session.execute("SELECT id FROM resources") == [("o1",)]
    assert item_search(store) == ["o1"]


def test_token_sets_of_a_rolled_back_session_are_stored_by_the_next(store: SQLStore) -> None:
    with pytest.raises(RuntimeError):
        with store.session(write=True) as session:
            session.put(madrs("o1"), "POST")
            session.flush()
            raise RuntimeError("the transaction fails after its sets were written")
    with store.session(write=True) as session:
        session.put(madrs("o2"), "POST")
    assert item_search(store) == ["o2"]


def test_token_rows_of_a_schema_2_database_are_converted_into_sets(
    store: SQLStore, database_url: str
) -> None:
    for oid in ("o1", "o2"):
        with store.session(write=True) as session:
            session.put(madrs(oid), "POST")
    with store.session(write=True) as session:  # back to schema 2: one row per token value
        session.execute(
            "CREATE TABLE idx_token (resource_type TEXT NOT NULL, id TEXT NOT NULL, "
            "param TEXT NOT NULL, system TEXT, code TEXT, text TEXT)"
        )
        session.execute(
            "INSERT INTO idx_token SELECT s.resource_type, s.id, s.param, m.system, m.code, m.text "
            "FROM idx_token_set s JOIN token_set_member m ON m.set_id = s.set_id"
        )
        session.execute("DELETE FROM idx_token_set")
        session.execute("DELETE FROM token_set_member")
        session.execute("UPDATE schema_info SET version = 2")
    store.close()
    upgraded = SQLStore(database_url, extract_index)
    assert item_search(upgraded) == ["o1", "o2"]
    with upgraded.session() as session:
        assert session.execute("SELECT count(*) FROM token_set_member")[0][0] == 12
        assert session.execute("SELECT version FROM schema_info")[0][0] == SCHEMA_VERSION
    with pytest.raises(StoreError), upgraded.session() as session:
        session.execute("SELECT count(*) FROM idx_token")  # dropped
    upgraded.close()


def test_a_token_set_stored_before_but_not_remembered_is_skipped(store: SQLStore) -> None:
    with store.session(write=True) as session:
        session.put(madrs("o1"), "POST")
    store._known_sets.clear()  # as after the store's bound on remembered sets
    with store.session(write=True) as session:
        session.put(madrs("o2"), "POST")
    with store.session() as session:
        assert session.execute("SELECT count(*) FROM token_set_member")[0][0] == 12
    assert item_search(store) == ["o1", "o2"]


def test_sqlite_index_tables_of_schema_3_are_rebuilt_without_rowid(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v3.db'}"
    store = SQLStore(url, extract_index)
    named = {**PATIENT, "name": [{"family": "Ode", "given": ["Ada", "Ada"]}]}  # equal rows
    with store.session(write=True) as session:
        session.put(named, "POST")
        session.put(madrs("o1"), "POST")
    with store.session(write=True) as session:  # back to schema 3: rowid tables, two indexes
        for table in KEYED_ON_SQLITE:
            session.execute(f"ALTER TABLE {table} RENAME TO old")
            session.execute(f"CREATE TABLE {table} AS SELECT * FROM old")
            session.execute(f"INSERT INTO {table} SELECT * FROM old LIMIT 1")  # a duplicate
            session.execute("DROP TABLE old")
            for index in ("match", "probe"):
                session.execute(f"CREATE INDEX {table}_{index} ON {table} (resource_type, id)")
        session.execute("UPDATE schema_info SET version = 3")
    store.close()
    upgraded = SQLStore(url, extract_index)
    with upgraded.session() as session:
        tables = dict(session.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        assert all("WITHOUT ROWID" in tables[t] for t in KEYED_ON_SQLITE)
        assert not any(name.endswith("_v3") for name in tables)
        assert find_ids(session.execute, "Patient", "given=ada") == ["p1"]
        assert find_ids(session.execute, "Observation", "status=final") == ["o1"]
    assert item_search(upgraded) == ["o1"]
    upgraded.close()


def test_current_versions_kept_in_resource_versions_by_schema_4_are_dropped(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'v4.db'}"
    store = SQLStore(url, extract_index)
    with store.session(write=True) as session:
        session.put(dict(PATIENT), "POST")
        session.put({**PATIENT, "gender": "male"}, "PUT")
        session.put(madrs("o1"), "POST")
    with store.session(write=True) as session:  # back to schema 4: a b"" row per current version
        session.execute(
            "INSERT INTO resource_versions SELECT resource_type, id, version_id, last_updated, "
            "deleted, seq, method, x'' FROM resources"
        )
        session.execute("DROP INDEX resources_seq")
        session.execute("UPDATE schema_info SET version = 4")
    store.close()
    upgraded = SQLStore(url, extract_index)
    with upgraded.session() as session:
        kept = session.execute("SELECT resource_type, id, version_id FROM resource_versions")
        everything = [(s.id, s.version_id) for _, s in session.history(None, None, None, 10)]
        total = session.history_count(None, None, None)
        v2 = session.vread("Patient", "p1", 2)
    upgraded.close()
    assert kept == [("Patient", "p1", 1)]
    assert everything == [("o1", 1), ("p1", 2), ("p1", 1)]
    assert total == 3
    assert v2 is not None and orjson.loads(v2.data)["gender"] == "male"


def test_patient_rows_that_subject_rows_hold_are_dropped_from_schema_5(database_url: str) -> None:
    store = SQLStore(database_url, extract_index)
    subjects = [("o1", "Patient/p1"), ("o2", "urn:uuid:5b0c1b8e-3f0e-4c8e-9d2a-7b1e0f6c4a11")]
    scores = [{**madrs(oid), "subject": {"reference": ref}} for oid, ref in subjects]
    scores[1]["subject"]["type"] = "Patient"  # urn:uuid: only the type element says Patient
    with store.session(write=True) as session:
        for score in scores:
            session.put(score, "POST")
        # back to schema 5: a patient row beside each subject row to a Patient
        session.execute(
            "INSERT INTO idx_reference (resource_type, id, param, target_type, target_id, url) "
            "SELECT resource_type, id, 'patient', target_type, target_id, url FROM idx_reference "
            "WHERE param = 'subject' AND target_type = 'Patient'"
        )
        session.execute("UPDATE schema_info SET version = 5")
    store.close()
    upgraded = SQLStore(database_url, extract_index)
    with upgraded.session() as session:
        rows = session.execute(
            "SELECT id, target_type FROM idx_reference WHERE param = 'patient' ORDER BY id"
        )
        found = find_ids(session.execute, "Observation", "patient=Patient/p1")
    upgraded.close()
    assert rows == [("o2", None)]
    assert found == ["o1"]


def test_reference_rows_of_absolute_urls_are_made_again_from_schema_6(database_url: str) -> None:
    store = SQLStore(database_url, extract_index)
    foreign = "http://other.example/fhir/Patient/p1"
    subjects = [("o1", foreign), ("o2", "Patient/p1")]
    with store.session(write=True) as session:
        for oid, ref in subjects:
            session.put({**madrs(oid), "subject": {"reference": ref}}, "POST")
        # back to schema 6: the URL's subject row named Patient p1, which covered `patient`
        session.execute(
            "UPDATE idx_reference SET target_type = 'Patient', target_id = 'p1' WHERE url = ?",
            (foreign,),
        )
        session.execute("DELETE FROM idx_reference WHERE id = 'o1' AND param = 'patient'")
        session.execute("UPDATE schema_info SET version = 6")
    store.close()
    upgraded = SQLStore(database_url, extract_index)
    with upgraded.session() as session:
        local = find_ids(session.execute, "Observation", "patient=Patient/p1")
        by_url = find_ids(session.execute, "Observation", f"patient={foreign}")
    upgraded.close()
    assert (local, by_url) == (["o2"], ["o1"])


def test_a_new_sqlite_file_has_the_store_page_size(tmp_path: Path) -> None:
    SQLStore(f"sqlite:///{tmp_path / 'new.db'}", extract_index).close()
    with sqlite3.connect(tmp_path / "new.db") as conn:
        assert conn.execute("PRAGMA page_size").fetchone() == (SQLITE_PAGE_SIZE,)


# Counts to a billion: minutes on either database unless cancelled.
ENDLESS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
    "SELECT count(*) FROM c"
)


def test_a_statement_past_the_timeout_is_cancelled_with_a_clear_error(database_url: str) -> None:
    store = SQLStore(database_url, extract_index, statement_timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(StatementTimeoutError) as caught, store.session() as session:
            session.execute(ENDLESS)
        assert time.monotonic() - started < 10
        assert caught.value.issues == [
            Issue(
                "error",
                "timeout",
                "The database statement ran longer than 0.2 s and was cancelled",
                None,
            )
        ]
        with store.session() as session:  # the connection serves the next statement
            assert session.execute("SELECT 1") == [(1,)]
    finally:
        store.close()
