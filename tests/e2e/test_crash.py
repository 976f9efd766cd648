"""A server killed (SIGKILL) at random moments during transaction ingest loses nothing it
confirmed and keeps no transaction in part.

Each round starts `fhir-bridge serve`, lets two clients post transaction Bundles (a Patient and
its Observations, all tagged with the Bundle's own identifier) and kills the server after a
random delay. Afterwards every Bundle is stored whole or not at all, every Bundle answered
2xx is stored, the indexes find what history holds, and SQLite's integrity_check passes.

The default run kills 3 times per database; FHIR_BRIDGE_TEST_KILLS=50 runs the long variant.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from typing import Any

import httpx

from tests.e2e.conftest import running_server

KILLS = int(os.environ.get("FHIR_BRIDGE_TEST_KILLS", "3"))
ENTRIES = 40  # per Bundle: a Patient and 39 Observations
TAG = "https://fhir-bridge.example/crash-test"
FHIR = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}


def bundle(tag: str) -> dict[str, Any]:
    identifier = [{"system": TAG, "value": tag}]
    observations = [
        {
            "resource": {
                "resourceType": "Observation",
                "identifier": identifier,
                "status": "final",
                "code": {"text": f"reading {n}"},
                "subject": {"reference": "urn:uuid:patient"},
                "valueQuantity": {"value": n},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        for n in range(ENTRIES - 1)
    ]
    patient = {
        "fullUrl": "urn:uuid:patient",
        "resource": {"resourceType": "Patient", "identifier": identifier},
        "request": {"method": "POST", "url": "Patient"},
    }
    return {"resourceType": "Bundle", "type": "transaction", "entry": [patient, *observations]}


class Ingest:
    """Clients posting Bundles until the server goes away: what they sent and what the
    server confirmed."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.confirmed: list[str] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def client(self, base: str, prefix: str) -> None:
        with httpx.Client(timeout=60) as http:
            for n in range(10_000):
                tag = f"{prefix}-{n}"
                with self.lock:
                    self.sent.append(tag)
                try:
                    response = http.post(base, json=bundle(tag), headers=FHIR)
                except httpx.TransportError:
                    return  # killed meanwhile: this Bundle's fate is unknown
                with self.lock:
                    if response.status_code == 200:
                        self.confirmed.append(tag)
                    else:
                        self.failures.append(f"{tag}: {response.status_code} {response.text}")
                        return


def count(http: httpx.Client, url: str, **params: str) -> int:
    response = http.get(url, params={**params, "_summary": "count"})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def test_a_killed_server_keeps_every_transaction_whole_or_absent(database_url: str) -> None:
    rng = random.Random(16)
    ingest = Ingest()
    for kill in range(KILLS):
        with running_server(database_url, rate_limit_per_second="0") as base:
            clients = [
                threading.Thread(target=ingest.client, args=(base, f"{kill}-{c}")) for c in range(2)
            ]
            for thread in clients:
                thread.start()
            threading.Event().wait(rng.uniform(0.3, 3.0))
            base.process.kill()
            base.process.wait(timeout=30)
            for thread in clients:
                thread.join(timeout=60)
    assert ingest.failures == []
    assert ingest.confirmed, "no Bundle was confirmed before a kill: the delays are too short"
    with (
        running_server(database_url, rate_limit_per_second="0") as base,
        httpx.Client(timeout=60) as http,
    ):
        stored = {}
        for tag in ingest.sent:
            patients = count(http, f"{base}/Patient", identifier=f"{TAG}|{tag}")
            observations = count(http, f"{base}/Observation", identifier=f"{TAG}|{tag}")
            stored[tag] = (patients, observations)
            assert (patients, observations) in ((0, 0), (1, ENTRIES - 1)), tag
        assert all(stored[tag] == (1, ENTRIES - 1) for tag in ingest.confirmed)
        whole = sum(1 for found in stored.values() if found != (0, 0))
        # the indexes find exactly what the resource table and history hold
        assert count(http, f"{base}/Observation") == whole * (ENTRIES - 1)
        assert count(http, f"{base}/Observation/_history") == whole * (ENTRIES - 1)
        assert count(http, f"{base}/Patient/_history") == whole
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
