"""Costly requests against a running server: how long each takes to answer, and how slow a
concurrent `GET /metadata` gets meanwhile (the requests of issue 16's findings 1-4).

    .venv/bin/python bench/cost_bench.py [--contained 16000 10000] [--copies 22] [--criteria 30]
        [--batch 200] [--against DIR] [--timeout 180]

Requests, each on a fresh SQLite database served by `fhir-bridge serve` (one worker):
  validate   Patient/$validate with n contained Organizations, each named by a `#` reference
  patch      PATCH of one `add` of [1] and n `copy` of /a into /a/-
  search     Observation? with n criteria `focus._has:Observation:focus:focus._id=x<i>`
  batch      a batch of n `GET Patient?_count=1000&_revinclude=Observation:subject`, on 100
             Patients with 20 Observations each
Prints per request its status, seconds to answer, response size, and the slowest and median
`GET /metadata` answer while it ran. `--against DIR` serves another checkout's code instead
(e.g. `git archive main | tar -x -C DIR`); a request past --timeout is reported as such.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from server import fresh_database, running_server

FHIR = {"Content-Type": "application/fhir+json"}


def validate_request(n: int) -> Callable[[httpx.Client], httpx.Response]:
    body = {
        "resourceType": "Patient",
        "contained": [
            {"resourceType": "Organization", "id": f"o{i}", "name": f"Clinic {i}"} for i in range(n)
        ],
        "generalPractitioner": [{"reference": f"#o{i}"} for i in range(n)],
    }
    return lambda client: client.post("/Patient/$validate", json=body, headers=FHIR)


def patch_request(n: int) -> Callable[[httpx.Client], httpx.Response]:
    ops: list[dict[str, Any]] = [{"op": "add", "path": "/a", "value": [1]}]
    ops += [{"op": "copy", "from": "/a", "path": "/a/-"}] * n
    headers = {"Content-Type": "application/json-patch+json"}
    return lambda client: client.patch("/Patient/p", json=ops, headers=headers)


def search_request(n: int) -> Callable[[httpx.Client], httpx.Response]:
    params = [("focus._has:Observation:focus:focus._id", f"x{i}") for i in range(n)]
    return lambda client: client.get("/Observation", params=params)


def batch_request(n: int) -> Callable[[httpx.Client], httpx.Response]:
    url = "Patient?_count=1000&_revinclude=Observation:subject"
    entries = [{"request": {"method": "GET", "url": url}} for _ in range(n)]
    body = {"resourceType": "Bundle", "type": "batch", "entry": entries}
    return lambda client: client.post(_root(client), json=body, headers=FHIR)


def seed(client: httpx.Client) -> None:
    """A Patient `p` (to patch), and 100 Patients with 20 Observations each (to include)."""
    client.put("/Patient/p", json={"resourceType": "Patient", "id": "p"}, headers=FHIR)
    entries: list[dict[str, Any]] = []
    for i in range(100):
        patient = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
        entries.append(
            {
                "fullUrl": patient,
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            }
        )
        for j in range(20):
            observation = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"note {j}"},
                "subject": {"reference": patient},
            }
            entries.append(
                {"resource": observation, "request": {"method": "POST", "url": "Observation"}}
            )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    client.post(_root(client), json=bundle, headers=FHIR).raise_for_status()


def _root(client: httpx.Client) -> str:
    """The base itself: POST [base]/ is a redirect."""
    return str(client.base_url).rstrip("/")


def measure(
    base: str, name: str, send: Callable[[httpx.Client], httpx.Response], timeout: float
) -> None:
    latencies: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=base, timeout=timeout) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get("/metadata")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    poller = threading.Thread(target=poll)
    with httpx.Client(base_url=base, timeout=timeout) as client:
        poller.start()
        started = time.perf_counter()
        try:
            response = send(client)
            outcome = f"{response.status_code}  {len(response.content) / 1e6:7.2f} MB"
        except httpx.TimeoutException:
            outcome = f"no answer within {timeout:g} s"
        elapsed = time.perf_counter() - started
    stop.set()
    poller.join()
    slowest = max(latencies, default=0.0)
    median = statistics.median(latencies) if latencies else 0.0
    print(
        f"{name:<22} {outcome:<22} {elapsed:8.2f} s   metadata: slowest {slowest:6.2f} s, "
        f"median {median * 1e3:6.1f} ms ({len(latencies)} requests)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contained", type=int, nargs="+", default=[16_000, 10_000])
    parser.add_argument("--copies", type=int, default=22)
    parser.add_argument("--criteria", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--against", help="serve this checkout's code instead of this one's")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args(argv)
    requests = [(f"validate n={n}", validate_request(n)) for n in args.contained]
    requests += [
        (f"patch copies={args.copies}", patch_request(args.copies)),
        (f"search criteria={args.criteria}", search_request(args.criteria)),
        (f"batch entries={args.batch}", batch_request(args.batch)),
    ]
    for name, send in requests:
        with tempfile.TemporaryDirectory() as folder, fresh_database(None, folder) as url:
            with running_server(url, checkout=args.against) as server:
                with httpx.Client(base_url=server.base, timeout=args.timeout) as client:
                    seed(client)
                measure(server.base, name, send, args.timeout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
