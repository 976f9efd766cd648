"""Bulk Data export benchmark: 1,000,000 Observations to NDJSON, as stored and through the
research view, on SQLite; the server's peak memory; fhir.resources for scale.

Usage:
  python bench/export_bench.py [--observations 1000000] [--db /tmp/fhir-bridge-export-bench.db]
      [--skip-load]

Loads synthetic trial Observations as bench/search_bench.py does (with their index rows),
plus a Patient and an enrolled ResearchSubject per participant, then starts a server per run
and times `GET $export?_type=Observation` from kick-off to manifest, reading every output
file back to check the count. Peak RSS is the server process's VmHWM after the run (the
start-up included). For scale, the same run measures fhir.resources R4B parse + serialize of
a sample of the same stored resources.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_bench import Target, connect, load  # noqa: E402
from server import running_server  # noqa: E402

from fhir_bridge.domain.fhir import model_class  # noqa: E402
from fhir_bridge.store.indexing import extract_index  # noqa: E402
from fhir_bridge.store.sql import SQLStore  # noqa: E402

ASYNC = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def participants(database_url: str, patients: int) -> None:
    """A Patient (with identifying details) and an enrolled ResearchSubject per participant."""
    store = SQLStore(database_url, extract_index)
    try:
        for first in range(0, patients, 1000):
            with store.session(write=True) as session:
                for n in range(first, min(patients, first + 1000)):
                    session.put(
                        {
                            "resourceType": "Patient",
                            "id": f"p{n}",
                            "identifier": [{"system": "http://ehr.example/mrn", "value": f"M{n}"}],
                            "name": [{"family": f"Family{n}", "given": ["Given"]}],
                            "birthDate": "1970-05-17",
                        },
                        "PUT",
                    )
                    session.put(
                        {
                            "resourceType": "ResearchSubject",
                            "id": f"rs{n}",
                            "status": "on-study",
                            "period": {"start": "2025-01-01"},
                            "study": {"reference": "ResearchStudy/s1"},
                            "individual": {"reference": f"Patient/p{n}"},
                        },
                        "PUT",
                    )
    finally:
        store.close()


def fhir_resources_rate(database_url: str, sample: int) -> float:
    store = SQLStore(database_url, extract_index)
    try:
        with store.session() as session:
            rows = session.execute(
                "SELECT data FROM resources WHERE resource_type = ? LIMIT ?",
                ("Observation", sample),
            )
    finally:
        store.close()
    model = model_class("Observation")
    payloads = [bytes(row[0]) for row in rows]
    started = time.perf_counter()
    for payload in payloads:
        model.model_validate_json(payload).model_dump_json()
    return len(payloads) / (time.perf_counter() - started)


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def export_once(database_url: str, view: str, export_dir: str) -> dict[str, Any]:
    env_dir = {"FHIR_BRIDGE_EXPORT_DIR": export_dir}
    import os

    with running_server(database_url, env={**os.environ, **env_dir}) as server:
        started_rss = peak_rss_mib(server.pid)
        started = time.perf_counter()
        kicked = httpx.get(
            f"{server.base}/$export",
            params={"_type": "Observation", "view": view},
            headers=ASYNC,
            timeout=60,
        )
        kicked.raise_for_status()
        while True:
            status = httpx.get(kicked.headers["content-location"], timeout=60)
            if status.status_code == 200:
                break
            status.raise_for_status()
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        peak = peak_rss_mib(server.pid)
        manifest = status.json()
        lines = 0
        for entry in manifest["output"]:
            with httpx.stream("GET", entry["url"], timeout=600) as response:
                for line in response.iter_lines():
                    lines += 1 if line else 0
    count = sum(entry["count"] for entry in manifest["output"])
    assert lines == count, (lines, count)
    return {"count": count, "seconds": seconds, "peak": peak, "idle": started_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--db", default="/tmp/fhir-bridge-export-bench.db")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--sample", type=int, default=20_000, help="fhir.resources sample size")
    args = parser.parse_args()
    patients = max(1, args.observations // 50)
    database_url = f"sqlite:///{args.db}"
    if not args.skip_load:
        Path(args.db).unlink(missing_ok=True)
        load_args = argparse.Namespace(dialect="sqlite", db=args.db)
        for target in connect(load_args):
            assert isinstance(target, Target)
            load(target, args.observations, patients)
        participants(database_url, patients)
        print(f"loaded {args.observations} Observations of {patients} participants")
    reference = fhir_resources_rate(database_url, args.sample)
    print(f"fhir.resources R4B parse + serialize, same resources: {reference:10,.0f} resources/s")
    with tempfile.TemporaryDirectory() as folder:
        for view in ("plain", "research"):
            run = export_once(database_url, view, folder)
            rate = run["count"] / run["seconds"]
            print(
                f"export {view:8} {run['count']:>9,} Observations in {run['seconds']:6.1f} s: "
                f"{rate:9,.0f} resources/s ({rate / reference:5.1f} x fhir.resources); "
                f"server peak RSS {run['peak']:.0f} MiB (after start-up {run['idle']:.0f} MiB)"
            )


if __name__ == "__main__":
    main()
