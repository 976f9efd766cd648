"""The export job table: one claim per job, stale jobs claimed again, cancellation seen."""

from __future__ import annotations

from fhir_bridge.store.exports import (
    Selection,
    beat,
    claim_job,
    delete_job,
    expired_jobs,
    finish_job,
    insert_job,
    read_batch,
    read_job,
    release_job,
    server_secret,
)
from fhir_bridge.store.sql import SQLStore


def queue(store: SQLStore, job_id: str, created: float) -> None:
    with store.session(write=True) as session:
        insert_job(session, job_id, "http://x/fhir/$export", b"{}", "2024-01-01T00:00:00Z", created)


def claim(store: SQLStore, owner: str, now: float, stale_before: float = 0.0) -> str | None:
    with store.session(write=True) as session:
        job = claim_job(session, owner, now, stale_before)
    return None if job is None else job.id


def test_each_job_is_claimed_once_oldest_first(store: SQLStore) -> None:
    queue(store, "b", created=2.0)
    queue(store, "a", created=1.0)
    assert claim(store, "w1", now=10.0) == "a"
    assert claim(store, "w2", now=10.0) == "b"
    assert claim(store, "w3", now=10.0) is None


def test_a_job_whose_worker_went_silent_is_claimed_again(store: SQLStore) -> None:
    queue(store, "a", created=1.0)
    assert claim(store, "dead", now=10.0) == "a"
    assert claim(store, "w2", now=11.0, stale_before=5.0) is None  # heartbeat 10 is fresh
    assert claim(store, "w2", now=50.0, stale_before=20.0) == "a"
    with store.session() as session:
        job = read_job(session, "a")
    assert job is not None and (job.owner, job.attempts) == ("w2", 2)
    with store.session(write=True) as session:  # the old owner's heartbeat now fails
        assert not beat(session, "a", "dead", "1 resource", 51.0)
        assert beat(session, "a", "w2", "1 resource", 51.0)


def test_a_deleted_job_stops_its_worker_and_cannot_finish(store: SQLStore) -> None:
    queue(store, "a", created=1.0)
    claim(store, "w1", now=10.0)
    with store.session(write=True) as session:
        assert delete_job(session, "a")
        assert not beat(session, "a", "w1", "", 11.0)
        assert not finish_job(session, "a", "w1", "completed", b"{}", 100.0)


def test_finished_jobs_expire(store: SQLStore) -> None:
    queue(store, "a", created=1.0)
    claim(store, "w1", now=10.0)
    with store.session(write=True) as session:
        assert finish_job(session, "a", "w1", "completed", b"{}", expires=100.0)
        assert expired_jobs(session, 99.0) == []
        assert expired_jobs(session, 101.0) == ["a"]


def test_server_secret_is_made_once_and_kept(store: SQLStore) -> None:
    with store.session(write=True) as session:
        first = server_secret(session, "pseudonym_key")
    with store.session(write=True) as session:
        assert server_secret(session, "pseudonym_key") == first
    assert len(first) == 32


def test_read_batch_pages_live_resources_in_write_order(store: SQLStore) -> None:
    with store.session(write=True) as session:
        for n in range(5):
            session.put({"resourceType": "Patient", "id": f"p{n}"}, "POST")
        session.delete("Patient", "p2")
    selection = Selection("Patient", until="2999-01-01T00:00:00Z")
    seen: list[str] = []
    after = -1
    while True:
        with store.session(scan=True) as session:
            rows = read_batch(session, selection, after, 2)
        seen += [row[1] for row in rows]
        if len(rows) < 2:
            break
        after = rows[-1][0]
    assert seen == ["p0", "p1", "p3", "p4"]


def test_read_batch_keeps_the_chosen_patients_compartments_with_their_ids(
    store: SQLStore,
) -> None:
    with store.session(write=True) as session:
        for patient in ("a", "b"):
            session.put({"resourceType": "Patient", "id": patient}, "POST")
            session.put(
                {
                    "resourceType": "Encounter",
                    "id": f"e-{patient}",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": f"Patient/{patient}"},
                },
                "POST",
            )
    selection = Selection(
        "Encounter",
        until="2999-01-01T00:00:00Z",
        compartment=True,
        patients=("b",),
        with_patient=True,
    )
    with store.session() as session:
        rows = read_batch(session, selection, -1, 10)
    assert [(row[1], row[3]) for row in rows] == [("e-b", "b")]


def test_read_batch_leaves_out_what_changed_after_the_job_began(store: SQLStore) -> None:
    with store.session(write=True) as session:
        session.put({"resourceType": "Patient", "id": "old"}, "POST")
    with store.session() as session:
        instant = session.read("Patient", "old")
    assert instant is not None
    with store.session(write=True) as session:
        session.put({"resourceType": "Patient", "id": "new"}, "POST")
    with store.session() as session:
        until = read_batch(session, Selection("Patient", until=instant.last_updated), -1, 10)
        since = read_batch(
            session,
            Selection("Patient", until="2999-01-01T00:00:00Z", since=instant.last_updated),
            -1,
            10,
        )
    assert [row[1] for row in until] == ["old"]
    assert [row[1] for row in since] == ["new"]


def test_a_released_job_is_queued_again_without_an_attempt_counted(store: SQLStore) -> None:
    queue(store, "a", created=1.0)
    claim(store, "stopping", now=10.0)
    with store.session(write=True) as session:
        release_job(session, "a", "stopping")
    assert claim(store, "w2", now=11.0) == "a"
    with store.session() as session:
        job = read_job(session, "a")
    assert job is not None and (job.owner, job.attempts) == ("w2", 1)
