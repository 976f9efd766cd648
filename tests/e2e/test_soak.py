"""A soak: clients that time out and send again, against two server processes, leave exactly
one resource per conditional create and lose no If-Match update.

`fhir-bridge serve --workers 2` runs on each database. Eight client threads each make SOAK
conditional creates, each with its own identifier: in turn a POST with If-None-Exist, and a
transaction Bundle whose two entries (a participant and its baseline Observation) carry
ifNoneExist. Many attempts get a client time-out of a few milliseconds and are sent again,
unchanged, until one is answered, so a retry often races its still-running original. After
every fourth create a client adds one to a shared counter: it reads the counter and writes it
back with If-Match, reading again after a 412. Afterwards every identifier names exactly one
resource at version 1, each baseline refers to its participant, each counter equals its
confirmed increments, and its history holds one version per increment, each one more than the
version before.

The default run makes 8 x 150 creates per database; FHIR_BRIDGE_TEST_SOAK=5000 runs the long
variant (8 x 5,000).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.conftest import running_server

SOAK = int(os.environ.get("FHIR_BRIDGE_TEST_SOAK", "150"))
CLIENTS = 8
COUNTERS = 2
INCREMENT_EVERY = 4
SYSTEM = "https://fhir-bridge.example/soak-test"
COUNTER_SYSTEM = "https://fhir-bridge.example/soak-test-counter"
FHIR = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
ANSWERED = 60.0  # the time-out of an attempt that must be answered
MAX_ATTEMPTS = 1000  # an update still refused after this many reads is a failure


def patient(tag: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]}


def enrolment(tag: str) -> dict[str, Any]:
    """A transaction Bundle whose every entry is a conditional create."""
    baseline = {
        "resourceType": "Observation",
        "identifier": [{"system": SYSTEM, "value": tag}],
        "status": "final",
        "code": {"text": "baseline"},
        "subject": {"reference": "urn:uuid:participant"},
    }
    condition = f"identifier={SYSTEM}|{tag}"
    entries = [
        ("urn:uuid:participant", patient(tag), "Patient"),
        ("urn:uuid:baseline", baseline, "Observation"),
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": url, "ifNoneExist": condition},
            }
            for full_url, resource, url in entries
        ],
    }


@dataclass
class Tally:
    """What one client did: the identifiers it created, its confirmed counter increments, and
    how often it timed out, met a 412 or found its own create stored by an earlier attempt."""

    created: list[str] = field(default_factory=list)
    enrolled: list[str] = field(default_factory=list)
    increments: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    conflicts: int = 0
    found_stored: int = 0  # retries answered 200: their timed-out original had been stored


def send_until_answered(
    http: httpx.Client, rng: random.Random, tally: Tally, request: httpx.Request
) -> httpx.Response:
    """Sends the same request until it is answered: an attempt times out after a few
    milliseconds half of the time, up to five times, then waits for its answer."""
    for attempt in range(6):
        short = attempt < 5 and rng.random() < 0.5
        timeout = rng.uniform(0.001, 0.05) if short else ANSWERED
        try:
            request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
            return http.send(request)
        except httpx.TimeoutException:
            tally.timeouts += 1
    raise AssertionError("unreachable: the last attempt waits for its answer")


def increment(http: httpx.Client, base: str, counter_id: str, tally: Tally) -> None:
    """Read-modify-write with If-Match, read again after a 412."""
    url = f"{base}/Observation/{counter_id}"
    for _ in range(MAX_ATTEMPTS):
        read = http.get(url)
        assert read.status_code == 200, read.text
        counter = read.json()
        counter["valueInteger"] += 1
        written = http.put(url, json=counter, headers={**FHIR, "If-Match": read.headers["ETag"]})
        if written.status_code == 412:
            tally.conflicts += 1
            continue
        assert written.status_code == 200, written.text
        tally.increments[counter_id] += 1
        return
    raise AssertionError(f"{url} refused {MAX_ATTEMPTS} updates in a row")


def client(base: str, number: int, counter_ids: list[str]) -> Tally:
    rng = random.Random(number)
    tally = Tally()
    with httpx.Client(timeout=ANSWERED) as http:
        for n in range(SOAK):
            tag = f"{number}-{n}"
            if n % 2:
                request = http.build_request("POST", base, json=enrolment(tag), headers=FHIR)
                response = send_until_answered(http, rng, tally, request)
                assert response.status_code == 200, response.text
                tally.enrolled.append(tag)
            else:
                headers = {**FHIR, "If-None-Exist": f"identifier={SYSTEM}|{tag}"}
                request = http.build_request(
                    "POST", f"{base}/Patient", json=patient(tag), headers=headers
                )
                response = send_until_answered(http, rng, tally, request)
                assert response.status_code in (200, 201), response.text
                tally.found_stored += response.status_code == 200
            tally.created.append(tag)
            if n % INCREMENT_EVERY == INCREMENT_EVERY - 1:
                increment(http, base, rng.choice(counter_ids), tally)
    return tally


def pages(http: httpx.Client, url: str) -> Iterator[dict[str, Any]]:
    """Every resource of a search or history, following the next links."""
    response = http.get(url, params={"_count": "1000"})
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        yield from (entry["resource"] for entry in bundle.get("entry", []))
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            return
        response = http.get(following[0])


def count(http: httpx.Client, url: str) -> int:
    response = http.get(url, params={"_summary": "count"})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def tagged(resources: Iterator[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Each soak resource with the identifier it carries."""
    return [
        (identifier["value"], resource)
        for resource in resources
        for identifier in resource.get("identifier", [])
        if identifier["system"] == SYSTEM
    ]


def test_retried_conditional_creates_and_if_match_updates_duplicate_and_lose_nothing(
    database_url: str,
) -> None:
    with (
        running_server(database_url, workers=2, rate_limit_per_second="0") as base,
        httpx.Client(timeout=ANSWERED) as http,
    ):
        counter_ids = []
        for number in range(COUNTERS):
            counter = {
                "resourceType": "Observation",
                "identifier": [{"system": COUNTER_SYSTEM, "value": str(number)}],
                "status": "final",
                "code": {"text": "soak counter"},
                "valueInteger": 0,
            }
            created = http.post(f"{base}/Observation", json=counter, headers=FHIR)
            assert created.status_code == 201, created.text
            counter_ids.append(created.headers["Location"].split("/")[-3])

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            runs = [pool.submit(client, base, number, counter_ids) for number in range(CLIENTS)]
            tallies = [run.result() for run in runs]

        created = [tag for tally in tallies for tag in tally.created]
        enrolled = [tag for tally in tallies for tag in tally.enrolled]
        increments = sum((tally.increments for tally in tallies), Counter())
        assert sum(tally.timeouts for tally in tallies) > 0, "no attempt timed out"
        assert sum(tally.conflicts for tally in tallies) > 0, "no If-Match update met a 412"
        assert sum(tally.found_stored for tally in tallies) > 0, "no retry met its original"

        patients = tagged(pages(http, f"{base}/Patient"))
        assert Counter(tag for tag, _ in patients) == Counter(created)
        baselines = tagged(pages(http, f"{base}/Observation"))
        assert Counter(tag for tag, _ in baselines) == Counter(enrolled)
        assert {resource["meta"]["versionId"] for _, resource in patients + baselines} == {"1"}
        participant = {tag: resource["id"] for tag, resource in patients}
        for tag, baseline in baselines:
            assert baseline["subject"]["reference"] == f"Patient/{participant[tag]}"
        # no retry left a further version behind: history holds one version per resource
        assert count(http, f"{base}/Patient/_history") == len(created)
        assert count(http, f"{base}/Observation/_history") == (
            len(enrolled) + COUNTERS + sum(increments.values())
        )
        for counter_id in counter_ids:
            final = http.get(f"{base}/Observation/{counter_id}").json()
            assert final["valueInteger"] == increments[counter_id]
            assert final["meta"]["versionId"] == str(increments[counter_id] + 1)
            history = pages(http, f"{base}/Observation/{counter_id}/_history")
            values = sorted((int(v["meta"]["versionId"]), v["valueInteger"]) for v in history)
            assert values == [(n + 1, n) for n in range(increments[counter_id] + 1)]
