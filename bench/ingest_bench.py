"""Ingest rate: transaction Bundles of MADRS score Observations posted over HTTP into SQLite.

Run: `.venv/bin/python bench/ingest_bench.py [--bundles 40] [--size 500]`
`--against DIR --rounds N` compares with the code of another checkout (e.g. `git worktree add`,
then `setup.py build_ext --inplace` there): the two servers take turns, N rounds, in the order
A B, B A, ..., so that the machine's drift during the hour falls on both alike.
Each Observation passes the full write path (validator with the MADRS profile, clinical rules,
index extraction, versioned storage). For scale, the same run measures fhir.resources R4B
parse + serialize of the same Observations (structure only, no storage), before the servers
run and after; each rate is also given as a multiple of their mean, a figure that moves less
with the machine's speed than the rate does (the machine here ran 1.7x slower on some days
than on others). Next to each rate:
the CPU time the whole machine spent per resource (server processes and client), whose
inverse times the cores bounds the rate, and the share of the cores' time the hypervisor
took for other guests (steal): rates measured while it is high understate the machine; and
how busy each server process was (its CPU time over the run's): a run whose processes are
not all busy measured the spread of the clients over them, not the code.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple
from urllib.parse import urlsplit

import orjson
from data import madrs_observation
from server import fresh_database, machine_cpu_seconds, running_server

from fhir_bridge.domain.fhir import model_class


def bundle(rng: random.Random, size: int) -> dict[str, object]:
    patient_url = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"
    entries: list[dict[str, object]] = [
        {
            "fullUrl": patient_url,
            "resource": {"resourceType": "Patient", "gender": "female"},
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for _ in range(size - 1):
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}",
                "resource": madrs_observation(rng, patient_url),
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def fhir_resources_rate(observations: list[dict[str, object]]) -> float:
    model = model_class("Observation")
    payloads = [orjson.dumps(o) for o in observations]
    started = time.perf_counter()
    for payload in payloads:
        model.model_validate_json(payload).model_dump_json()
    return len(payloads) / (time.perf_counter() - started)


class Run(NamedTuple):
    seconds: float  # to post all Bundles but the warm-up ones
    cpu: float  # CPU seconds the machine spent meanwhile
    stolen: float  # seconds the hypervisor took from the cores meanwhile
    worker_cpu: list[float]  # CPU seconds of each server process meanwhile


def post_all(
    database: str, bundles: list[bytes], workers: int, clients: int, checkout: str | None = None
) -> Run:
    """Post all Bundles, the first one per worker as a warm-up, to a fresh server (of
    `checkout`, default this one)."""
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    with running_server(database, workers, checkout=checkout) as server:
        url = urlsplit(server.base)

        def post(body: bytes) -> None:
            # http.client: the load generator shares the machine, and httpx cost it several
            # times the CPU (h11 in Python). A connection per Bundle: the server process that
            # accepts a connection serves it to the end, and with one keep-alive connection per
            # client all four sometimes landed on one process (2 of 18 runs here).
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
            try:
                connection.request("POST", url.path, body, headers)
                response = connection.getresponse()
                response.read()
            finally:
                connection.close()
            if response.status != 200:
                raise RuntimeError(f"the server answered {response.status}")

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, bundles[:workers]))
            started, (cpu, stolen) = time.perf_counter(), machine_cpu_seconds()
            worker_cpu = server.worker_cpu_seconds()
            list(pool.map(post, bundles[workers:]))
            cpu_after, stolen_after = machine_cpu_seconds()
            seconds = time.perf_counter() - started
            worker_cpu_after = server.worker_cpu_seconds()
            spent = [b - a for a, b in zip(worker_cpu, worker_cpu_after, strict=True)]
            return Run(seconds, cpu_after - cpu, stolen_after - stolen, spent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=40)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4, help="parallel clients, 2nd set-up")
    parser.add_argument(
        "--database", help="database URL (default: a new SQLite file); e.g. postgresql://..."
    )
    parser.add_argument("--against", help="another checkout, run in turns with this one")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(11)
    bundles = [orjson.dumps(bundle(rng, args.size)) for _ in range(args.bundles)]
    cores = os.cpu_count() or 1
    sample = [e["resource"] for e in orjson.loads(bundles[0])["entry"][1:]]
    engine = "PostgreSQL" if (args.database or "").startswith("postgres") else "SQLite"
    print(f"{cores} cores; transaction Bundles of {args.size} entries over HTTP, {engine}")
    checkouts: list[str | None] = [None, args.against] if args.against else [None]
    before = fhir_resources_rate(sample)
    lines: list[tuple[str, float]] = []
    for round_ in range(args.rounds):
        for checkout in checkouts if round_ % 2 == 0 else checkouts[::-1]:
            code = f"{checkout} " if checkout else ""
            for workers, clients in ((1, 1), (cores, args.clients)):
                with (
                    tempfile.TemporaryDirectory() as tmp,
                    fresh_database(args.database, tmp) as database,
                ):
                    run = post_all(database, bundles, workers, clients, checkout)
                count = (args.bundles - workers) * args.size
                label = f"{code}{workers} server process(es), {clients} client(s)"
                busy = " ".join(f"{cpu / run.seconds:.0%}" for cpu in run.worker_cpu)
                print(
                    f"fhir-bridge ingest, {label:34} {count / run.seconds:8.0f} resources/s"
                    f"   machine CPU {run.cpu / count * 1e6:4.0f} µs per resource"
                    f"   server processes busy {busy}"
                    f"   stolen by the host {run.stolen / (run.seconds * cores):4.0%}"
                    " of the cores' time",
                    flush=True,
                )
                lines.append((label, count / run.seconds))
    after = fhir_resources_rate(sample)
    print(
        "fhir.resources R4B parse + serialize only, same resources: "
        f"{before:.0f} resources/s before the servers ran, {after:.0f} after"
    )
    reference = (before + after) / 2
    for label, rate in lines:
        print(f"fhir-bridge ingest, {label:34} {rate / reference:5.1f} x fhir.resources")


if __name__ == "__main__":
    main()
