"""Several clients at once against a real server: nothing lost, nothing duplicated."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.e2e.conftest import running_server

FHIR = {"Content-Type": "application/fhir+json"}
MRN = "http://hospital.example/mrn"


def bundle(n: int, shared: str) -> dict[str, Any]:
    """A participant shared by every client (conditional create) and one Observation each."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:patient",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": MRN, "value": shared}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={MRN}|{shared}",
                },
            },
            {
                "fullUrl": "urn:uuid:observation",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": f"note {n}"},
                    "subject": {"reference": "urn:uuid:patient"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def race(server_url: str) -> None:
    """24 retried transactions from 8 clients at once: one participant, 24 Observations."""

    def post(n: int) -> httpx.Response:
        return httpx.post(server_url, json=bundle(n, "MRN-RACE"), headers=FHIR, timeout=60)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(post, range(24)))
    assert [r.status_code for r in responses] == [200] * 24
    patients = httpx.get(f"{server_url}/Patient", params={"identifier": f"{MRN}|MRN-RACE"}).json()
    assert len(patients["entry"]) == 1
    patient_id = patients["entry"][0]["resource"]["id"]
    observations = httpx.get(
        f"{server_url}/Observation",
        params={"subject": f"Patient/{patient_id}", "_summary": "count"},
    ).json()
    assert observations["total"] == 24


def test_concurrent_retries_create_one_participant_and_lose_no_observation(
    server_url: str,
) -> None:
    race(server_url)


def test_two_server_processes_on_one_database_lose_and_duplicate_nothing(
    database_url: str,
) -> None:
    with running_server(database_url, workers=2) as url:
        race(url)
