"""Transactions planned before the write lock (services/bundles.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from fhir_bridge.domain import memo
from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import StoreError
from fhir_bridge.services import bundles
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.store.base import Staged, StoreSession
from fhir_bridge.store.sql import SQLStore
from tests.bundle_entries import patch_entry

MRN = "http://hospital.example/mrn"


class Interleaved:
    """A store on which another writer creates `intruder` just before the next write lock."""

    def __init__(self, store: SQLStore, intruder: dict[str, Any]) -> None:
        self.store = store
        self.dialect = store.dialect
        self.intruder: dict[str, Any] | None = intruder

    def stage(self, resource: dict[str, Any]) -> Staged:
        return self.store.stage(resource)

    @contextmanager
    def session(self, write: bool = False) -> Iterator[StoreSession]:
        if write and self.intruder is not None:
            intruder, self.intruder = self.intruder, None
            with self.store.session(write=True) as other:
                other.put(intruder, "POST")
        with self.store.session(write) as session:
            yield session

    def close(self) -> None:
        self.store.close()


def patient_ids(store: SQLStore) -> list[str]:
    with store.session() as session:
        rows = session.execute(
            "SELECT id FROM resources WHERE resource_type = 'Patient' ORDER BY id"
        )
    return [row[0] for row in rows]


def test_a_plan_overtaken_by_another_writer_is_made_again(store: SQLStore) -> None:
    identifier = [{"system": MRN, "value": "42"}]
    interleaved = Interleaved(
        store, {"resourceType": "Patient", "id": "early", "identifier": identifier}
    )
    ctx = ServiceContext(store=interleaved, validator=lambda resource, profiles: [])
    entries = [
        {
            "fullUrl": "urn:uuid:0d6c1e8e-5f1a-4c3b-9a57-1f2e3d4c5b6a",
            "resource": {"resourceType": "Patient", "identifier": identifier},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN}|42"},
        },
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "MADRS"},
                "subject": {"reference": "urn:uuid:0d6c1e8e-5f1a-4c3b-9a57-1f2e3d4c5b6a"},
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    ]
    response = orjson.loads(bundles.transaction(ctx, entries, "http://x/fhir"))
    # planned before the lock: no patient, so a create; under the lock the patient exists
    assert patient_ids(store) == ["early"]
    assert response["entry"][0]["response"]["status"] == "200 OK"
    observation = response["entry"][1]["resource"]
    assert observation["subject"] == {"reference": "Patient/early"}


def test_references_are_rewritten_wherever_they_are_and_only_there(store: SQLStore) -> None:
    ctx = ServiceContext(store=store, validator=lambda resource, profiles: [])
    patient = "urn:uuid:5b0c7a52-7c3e-4d36-9f0e-3a1c2b4d5e6f"
    tricky = 'say "reference":"' + patient + '" and \\ "quotes"'
    with store.session(write=True) as session:  # what the hasMember reference names
        session.put({"resourceType": "Observation", "id": "other"}, "POST")
    entries = [
        {
            "fullUrl": patient,
            "resource": {"resourceType": "Patient"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": tricky},
                "subject": {"reference": patient, "display": 'Ö \\"x\\"'},
                "note": [{"text": patient}],
                "hasMember": [{"reference": "Observation/other"}],
                "performer": [{"reference": patient}],
                "extension": [
                    {"url": "https://example.org/x", "valueReference": {"reference": patient}}
                ],
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    ]
    posted = orjson.loads(orjson.dumps(entries))
    response = orjson.loads(bundles.transaction(ctx, entries, "http://x/fhir"))
    assert entries == posted  # rewritten copies: a plan made again starts from these
    patient_ref = "Patient/" + response["entry"][0]["resource"]["id"]
    observation = response["entry"][1]["resource"]
    assert observation["extension"][0]["valueReference"] == {"reference": patient_ref}
    assert observation["subject"] == {"reference": patient_ref, "display": 'Ö \\"x\\"'}
    assert observation["performer"] == [{"reference": patient_ref}]
    assert observation["code"] == {"text": tricky}
    assert observation["note"] == [{"text": patient}]
    assert observation["hasMember"] == [{"reference": "Observation/other"}]


def test_references_a_patch_writes_are_rewritten_too(store: SQLStore) -> None:
    ctx = ServiceContext(store=store, validator=lambda resource, profiles: [])
    patient = "urn:uuid:0d4f4cbe-2f0e-4c7a-9a57-0b6f7d1c2e3a"
    with store.session(write=True) as session:
        for observation_id in ("o1", "o2"):
            session.put({"resourceType": "Observation", "id": observation_id}, "POST")
    ops = [  # a reference in a value, and a value that is the reference
        [{"op": "add", "path": "/subject", "value": {"reference": patient}}],
        [
            {"op": "add", "path": "/subject", "value": {}},
            {"op": "add", "path": "/subject/reference", "value": patient},
        ],
    ]
    create = {
        "fullUrl": patient,
        "resource": {"resourceType": "Patient"},
        "request": {"method": "POST", "url": "Patient"},
    }
    patches = [patch_entry(f"Observation/o{n}", orjson.dumps(ops[n - 1])) for n in (1, 2)]
    response = orjson.loads(bundles.transaction(ctx, [*patches, create], "http://x/fhir"))
    patient_ref = "Patient/" + response["entry"][2]["resource"]["id"]
    assert [e["resource"]["subject"] for e in response["entry"][:2]] == [
        {"reference": patient_ref},
        {"reference": patient_ref},
    ]


class FailingCommit:
    """A store whose write sessions fail when they commit, after all their work was done."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self.dialect = store.dialect

    def stage(self, resource: dict[str, Any]) -> Staged:
        return self.store.stage(resource)

    @contextmanager
    def session(self, write: bool = False) -> Iterator[StoreSession]:
        with self.store.session() as session:
            yield session
        if write:
            raise StoreError("The database failed to complete the request")


def test_a_batch_entry_whose_commit_fails_is_reported_once_as_failed(store: SQLStore) -> None:
    ctx = ServiceContext(store=FailingCommit(store), validator=lambda resource, profiles: [])
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    body = orjson.dumps(batch)
    response = orjson.loads(bundles.process(ctx, body, "http://x/fhir", lambda exc: 500))
    assert [e["response"]["status"] for e in response["entry"]] == ["500"]


def test_a_request_copy_carries_every_field() -> None:
    # every field set to a value of its own, so that a field the copy forgets shows
    values: dict[str, Any] = {f.name: f"{f.name}" for f in dataclasses.fields(bundles._Request)}
    values.update(index=7, resource={"resourceType": "Patient"}, patch=[{"op": "remove"}])
    request = bundles._Request(**values)
    copied = request.copy()
    assert copied == request and copied is not request


def test_bundles_of_one_process_run_one_at_a_time(store: SQLStore) -> None:
    events: list[str] = []

    def slow(resource: dict[str, Any]) -> dict[str, Any]:  # a transform: runs in the plan
        events.append(f"start {resource['gender']}")
        time.sleep(0.05)  # long enough for the other thread to start its transaction
        events.append(f"end {resource['gender']}")
        return resource

    ctx = ServiceContext(store=store, validator=lambda resource, profiles: [], transforms=[slow])

    def post(gender: str) -> None:  # creates: planned before the database's write lock
        entry = {
            "resource": {"resourceType": "Patient", "gender": gender},
            "request": {"method": "POST", "url": "Patient"},
        }
        body = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        bundles.process(ctx, body, "http://x/fhir", lambda exc: 500)

    threads = [threading.Thread(target=post, args=(gender,)) for gender in ("male", "female")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events in (
        ["start male", "end male", "start female", "end female"],
        ["start female", "end female", "start male", "end male"],
    )


def test_only_resources_created_as_parsed_from_a_plain_body_are_checked_as_plain(
    store: SQLStore,
) -> None:
    seen: list[tuple[str, bool]] = []

    def validator(resource: dict[str, Any], profiles: Sequence[str]) -> list[Issue]:
        # a key for a local reference is made only for values of plain JSON (memo.SharedKeys)
        plain = memo.Memo().key({"reference": "#x"}) is not None
        seen.append((resource.get("gender", ""), plain))
        return []

    ctx = ServiceContext(store=store, validator=validator)
    with store.session(write=True) as session:  # stored: may hold nulls, local references
        session.put({"resourceType": "Patient", "id": "p1", "gender": "male"}, "POST")
    ops = orjson.dumps([{"op": "replace", "path": "/gender", "value": "other"}])
    patch = patch_entry("Patient/p1", ops)
    create = {
        "resource": {"resourceType": "Patient", "gender": "female"},
        "request": {"method": "POST", "url": "Patient"},
    }
    body = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [patch, create]})
    assert ctx.for_body(body).plain_body
    bundles.process(ctx, body, "http://x/fhir", lambda exc: 500)
    assert sorted(seen) == [("female", True), ("other", False)]
