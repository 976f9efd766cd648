"""Single-resource create and read rates over HTTP against uvicorn on SQLite.

Run: `.venv/bin/python bench/rest_bench.py [--count 2000] [--clients 4] [--auth]`
With --auth the server runs with SMART Backend Services on, every request with a bearer token
(token check, client look-up and an AuditEvent per request; a Provenance per create).
Starts the server in a subprocess with a fresh database, then drives it with httpx from client
threads (and with `wrk` for reads when it is installed: `apt-get install wrk`).
Every create goes through the full write path (validator, MADRS profile, clinical
rules, index extraction). Prints requests per second and latency percentiles.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from data import madrs_observation
from server import running_server

from fhir_bridge.smart_client import read_private_key, request_token

Work = Callable[[httpx.Client, int], None]


def run(clients: int, count: int, work: Work) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = count // clients

    def loop(n: int) -> None:
        local = []
        with httpx.Client(timeout=30) as http:
            for i in range(per_client):
                started = time.perf_counter()
                work(http, n * per_client + i)
                local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


def report(name: str, elapsed: float, latencies: list[float]) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<8} {len(latencies) / elapsed:8.0f}/s   p50 {q[49] * 1000:6.2f} ms"
        f"   p95 {q[94] * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms   (n={len(latencies)})"
    )


def _token(base: str, database_url: str, folder: str) -> str:
    """A token of an ehr client registered in the server's database."""
    key = f"{folder}/ehr.jwk"
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_bridge",
            "clients",
            "add",
            "bench",
            "--role",
            "ehr",
            "--new-key",
            key,
            "--database",
            database_url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    client_id = added.stdout.strip().splitlines()[-1]
    with httpx.Client() as http:
        answer = request_token(
            http, f"{base}/auth/token", client_id, read_private_key(Path(key)), "system/*.cruds"
        )
    return str(answer["access_token"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--auth", action="store_true", help="authentication and audit on")
    args = parser.parse_args()
    rng = random.Random(7)
    observations = [madrs_observation(rng, "Patient/bench") for _ in range(args.count)]
    ids = [""] * args.count
    headers = {"Content-Type": "application/fhir+json"}
    env = {**os.environ, "FHIR_BRIDGE_AUTH": "enabled" if args.auth else "disabled"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(f"sqlite:///{tmp}/b.db", env=env) as server,
    ):
        base = server.base
        if args.auth:
            headers["Authorization"] = f"Bearer {_token(base, f'sqlite:///{tmp}/b.db', tmp)}"

        # the Observations' subject: a write's local references must name a stored resource
        patient = {"resourceType": "Patient", "id": "bench"}
        httpx.put(f"{base}/Patient/bench", json=patient, headers=headers).raise_for_status()

        def create(http: httpx.Client, i: int) -> None:
            response = http.post(f"{base}/Observation", json=observations[i], headers=headers)
            response.raise_for_status()
            ids[i] = response.json()["id"]

        def read(http: httpx.Client, i: int) -> None:
            http.get(f"{base}/Observation/{ids[i]}", headers=headers).raise_for_status()

        print(
            f"uvicorn (1 process), SQLite WAL, {args.clients} client threads, "
            f"MADRS Observation with 10 components, {os.cpu_count()} cores, "
            f"authentication {'on' if args.auth else 'off'}"
        )
        report("create", *run(args.clients, args.count, create))
        report("read", *run(args.clients, args.count, read))
        if shutil.which("wrk"):  # a C client: shows the server's limit, not the Python client's
            url = f"{base}/Observation/{ids[0]}"
            auth = ["-H", f"Authorization: {headers['Authorization']}"] if args.auth else []
            out = subprocess.run(
                ["wrk", "-t2", "-c8", "-d8s", *auth, url],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rate = next(line for line in out.splitlines() if line.startswith("Requests/sec"))
            print(f"read     wrk -t2 -c8 -d8s: {rate.split()[-1]}/s")


if __name__ == "__main__":
    main()
