"""Single-resource create and read rates over HTTP against uvicorn on SQLite.

Run: `.venv/bin/python bench/rest_bench.py [--count 2000] [--clients 4]`
Starts the server in a subprocess on a free port with a fresh database, then drives it with
httpx from client threads. Prints requests per second and latency percentiles.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "survey",
                }
            ]
        }
    ],
    "code": {
        "coding": [
            {"system": "https://fhir-bridge.org/fhir/CodeSystem/assessment", "code": "madrs-total"}
        ]
    },
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2025-03-01T10:00:00Z",
    "valueQuantity": {
        "value": 30,
        "unit": "{score}",
        "system": "http://unitsofmeasure.org",
        "code": "{score}",
    },
    "component": [
        {
            "code": {
                "coding": [
                    {
                        "system": "https://fhir-bridge.org/fhir/CodeSystem/assessment",
                        "code": f"madrs-{n}",
                    }
                ]
            },
            "valueInteger": 3,
        }
        for n in range(1, 11)
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FHIR_BRIDGE_DATABASE_URL": f"sqlite:///{db}"}
    cmd = [sys.executable, "-m", "fhir_bridge", "serve", "--port", str(port)]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def run(clients: int, count: int, work: callable) -> tuple[float, list[float]]:  # type: ignore[valid-type]
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = count // clients

    def loop(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            local = []
            for i in range(per_client):
                started = time.perf_counter()
                work(http, n * per_client + i)
                local.append(time.perf_counter() - started)
            with lock:
                latencies.extend(local)

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


def report(name: str, elapsed: float, latencies: list[float]) -> None:
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{name:<8} {len(latencies) / elapsed:8.0f}/s   p50 {q[49] * 1000:6.2f} ms"
        f"   p95 {q[94] * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms   (n={len(latencies)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(Path(tmp) / "bench.db", port)
        base = f"http://127.0.0.1:{port}/fhir"
        ids: list[str] = [""] * args.count
        headers = {"Content-Type": "application/fhir+json"}
        try:

            def create(http: httpx.Client, i: int) -> None:
                response = http.post(f"{base}/Observation", json=OBSERVATION, headers=headers)
                response.raise_for_status()
                ids[i] = response.json()["id"]

            def read(http: httpx.Client, i: int) -> None:
                http.get(f"{base}/Observation/{ids[i]}").raise_for_status()

            print(
                f"uvicorn (1 worker), SQLite WAL, {args.clients} client threads, "
                f"Observation with 10 components, {os.cpu_count()} cores"
            )
            report("create", *run(args.clients, args.count, create))
            report("read", *run(args.clients, args.count, read))
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
