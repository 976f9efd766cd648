"""`$viewdefinition-run` over stored data: N MADRS Observations (10 item components each) in
SQLite, the scores-long view (one row per component: participant key, item code, item score)
run through a real HTTP server to CSV; rows/s and the server's peak RSS; then fhir4ds 0.5.1 on
the same Observations, beside it, when its virtual environment exists.

Usage:
  python bench/view_run_bench.py [N] [--db /tmp/fhir-bridge-view-run-bench.db] [--skip-load]
      [--fhir4ds-python /work/fhir4ds-venv/bin/python]

N defaults to 1,000,000. The Observations are written with the index rows the store writes
(bench/search_bench.py), with a Patient and an enrolled ResearchSubject per 50 of them
(bench/export_bench.py), so every row comes through the research view (pseudonymised).
The server runs as one process; its peak RSS is its VmHWM after the run (start-up included).
Our time runs from the request to the last byte of CSV, counted by the client.

fhir4ds gets the same stored Observations as NDJSON (not pseudonymised: it has no research
view) and the same view, two paths written as it computes them (FHIR4DS_VIEW); its time runs
from loading the NDJSON into DuckDB to the CSV file, and the time of the query and CSV alone
is printed too. It runs in its own virtual
environment (fhir4ds 0.5.1 needs duckdb 1.3.2), made outside this repository:
  python3.11 -m venv /work/fhir4ds-venv
  /work/fhir4ds-venv/bin/pip install fhir4ds==0.5.1 duckdb==1.3.2
Without it, the bench says so and prints our figure alone.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from export_bench import participants, peak_rss_mib  # noqa: E402
from search_bench import ASSESSMENT, Target, connect, load, observation  # noqa: E402
from server import running_server  # noqa: E402
from views_bench import SCORES_LONG  # noqa: E402

FHIR4DS_PYTHON = "/work/fhir4ds-venv/bin/python"
# The same view for fhir4ds 0.5.1 in paths it computes: inside forEach it leaves
# `code.coding.first().code` and `value.ofType(integer)` empty on every row (seen here on
# these Observations), while `code.coding[0].code` and `valueInteger` give the item and score.
FHIR4DS_VIEW: dict[str, Any] = {
    **SCORES_LONG,
    "select": [
        SCORES_LONG["select"][0],
        {
            "forEach": "component",
            "column": [
                {"name": "item", "path": "code.coding[0].code", "type": "code"},
                {"name": "score", "path": "valueInteger", "type": "integer"},
            ],
        },
    ],
}
COMPONENTS = 10
PER_PATIENT = 50  # Observations of one participant


def madrs_observation(index: int, patients: int, rng: random.Random) -> dict[str, Any]:
    """search_bench's Observation, always the MADRS total with its 10 item components."""
    resource = observation(index, patients, rng)
    if "component" not in resource:
        resource["code"] = {"coding": [{"system": ASSESSMENT, "code": "madrs-total"}]}
        resource["component"] = [
            {
                "code": {"coding": [{"system": ASSESSMENT, "code": f"madrs-{item}"}]},
                "valueInteger": rng.randrange(7),
            }
            for item in range(1, COMPONENTS + 1)
        ]
    return resource


def run_ours(database_url: str, expected: int) -> dict[str, float]:
    env = {**os.environ, "FHIR_BRIDGE_MAX_VIEW_RUN_ROWS": str(expected + 1)}
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "viewResource", "resource": SCORES_LONG},
            {"name": "_format", "valueCode": "csv"},
        ],
    }
    with running_server(database_url, env=env) as server:
        idle = peak_rss_mib(server.pid)
        cpu_before = sum(server.worker_cpu_seconds())
        started = time.perf_counter()
        lines = 0
        with httpx.stream(
            "POST", f"{server.base}/$viewdefinition-run", json=body, timeout=3600
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                lines += chunk.count(b"\n")
        seconds = time.perf_counter() - started
        cpu = sum(server.worker_cpu_seconds()) - cpu_before
        peak = peak_rss_mib(server.pid)
    rows = lines - 1  # the header
    assert rows == expected, (rows, expected)
    return {"rows": rows, "seconds": seconds, "cpu": cpu, "peak": peak, "idle": idle}


def dump_ndjson(db: str, path: Path) -> int:
    """The stored Observations as NDJSON, as they are in the database."""
    target = next(connect(argparse.Namespace(dialect="sqlite", db=db)))
    count = 0
    with path.open("wb") as out:
        cursor = target.conn.execute(
            "SELECT data FROM resources WHERE resource_type = 'Observation' AND deleted = 0"
        )
        for (data,) in cursor:
            out.write(bytes(data))
            out.write(b"\n")
            count += 1
    target.conn.close()
    return count


def run_fhir4ds(python: str, ndjson: Path, folder: Path) -> dict[str, float] | None:
    view = folder / "view.json"
    view.write_bytes(orjson.dumps(FHIR4DS_VIEW))
    out = folder / "fhir4ds.csv"
    done = subprocess.run(
        [python, str(BENCH / "fhir4ds_run.py"), str(ndjson), str(view), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"fhir4ds failed:\n{done.stderr[-3000:]}")
        return None
    figures: dict[str, float] = orjson.loads(done.stdout.strip().splitlines()[-1])
    with out.open() as rows:
        next(rows)
        empty = sum(1 for row in rows if "" in row.rstrip("\n").split(","))
    figures["rows_with_empty_cells"] = empty
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("observations", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--db", default="/tmp/fhir-bridge-view-run-bench.db")
    parser.add_argument("--skip-load", action="store_true", help="reuse the database of --db")
    parser.add_argument("--fhir4ds-python", default=FHIR4DS_PYTHON)
    args = parser.parse_args()
    patients = max(1, args.observations // PER_PATIENT)
    database_url = f"sqlite:///{args.db}"
    if not args.skip_load:
        Path(args.db).unlink(missing_ok=True)
        for target in connect(argparse.Namespace(dialect="sqlite", db=args.db)):
            assert isinstance(target, Target)
            load(target, args.observations, patients, make=madrs_observation)
        participants(database_url, patients)
        print(f"loaded {args.observations:,} Observations of {patients:,} participants")
    expected = args.observations * COMPONENTS
    print(
        f"view scores_long (one row per component: {', '.join(_columns())}), "
        f"{args.observations:,} Observations x {COMPONENTS} = {expected:,} rows, CSV"
    )
    ours = run_ours(database_url, expected)
    print(
        f"fhir-bridge $viewdefinition-run over HTTP, research view: "
        f"{ours['rows'] / ours['seconds']:10,.0f} rows/s "
        f"({ours['seconds']:.1f} s); server peak RSS {ours['peak']:.0f} MiB "
        f"(after start-up {ours['idle']:.0f} MiB)"
    )
    # On a shared machine the wall clock counts time the server waited for a core.
    print(
        f"  per CPU second of the server process: {ours['rows'] / ours['cpu']:10,.0f} rows "
        f"({ours['cpu']:.1f} CPU s); load average now {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    if not Path(args.fhir4ds_python).exists():
        print(f"fhir4ds: skipped, no virtual environment at {args.fhir4ds_python}")
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        ndjson = folder / "Observation.ndjson"
        dumped = dump_ndjson(args.db, ndjson)
        theirs = run_fhir4ds(args.fhir4ds_python, ndjson, folder)
    if theirs is None:
        return
    assert theirs["rows"] == expected, (theirs["rows"], expected)
    assert theirs["rows_with_empty_cells"] == 0, theirs
    total = theirs["load_seconds"] + theirs["query_seconds"]
    print(
        f"fhir4ds 0.5.1 (DuckDB 1.3.2), {dumped:,} Observations from NDJSON: "
        f"{theirs['rows'] / total:10,.0f} rows/s ({total:.1f} s: load "
        f"{theirs['load_seconds']:.1f} s, query and CSV {theirs['query_seconds']:.1f} s, "
        f"{theirs['rows'] / theirs['query_seconds']:,.0f} rows/s); peak RSS "
        f"{theirs['peak']:.0f} MiB"
    )
    print(f"rows/s fhir-bridge / fhir4ds: {total / ours['seconds']:.2f} x")


def _columns() -> list[str]:
    return [c["name"] for select in SCORES_LONG["select"] for c in select["column"]]


if __name__ == "__main__":
    main()
