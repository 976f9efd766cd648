"""Instructions per resource of a transaction Bundle of MADRS scores, counted by callgrind.

Run: `.venv/bin/python bench/instructions.py [--http]`
Counts do not drift with the machine's speed, unlike rates. The workload (the ingest bench's
Bundles of 500, SQLite) runs twice under `valgrind --tool=callgrind`, with 1 and with 3 Bundles
after a warm-up; the difference divided by the 1,000 extra resources is the cost of one
resource, start-up and generation of the test data cancelled out. Without `--http` the Bundles'
bodies go straight to the service layer (`bundles.process`, as POST /fhir calls it); with it
they are posted to a `fhir-bridge serve` process (1 worker) and the server process is counted.
Takes minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile

import httpx
import orjson
from ingest_bench import bundle
from server import running_server

SIZE = 500
MOST = 3  # Bundles after the warm-up in the larger run
HEADERS = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}


def bodies(count: int) -> list[bytes]:
    """A warm-up Bundle and `count` more. Always made for the largest count, so that making
    them costs both counted runs the same."""
    rng = random.Random(11)
    return [orjson.dumps(bundle(rng, SIZE)) for _ in range(MOST + 1)][: count + 1]


def in_process(count: int) -> None:
    """The workload itself, run under callgrind by `counted`."""
    from fhir_bridge.api.app import tune_collector
    from fhir_bridge.api.handlers import status_for
    from fhir_bridge.services import bundles, trial_rules
    from fhir_bridge.store.indexing import extract_index
    from fhir_bridge.store.sql import SQLStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLStore(f"sqlite:///{tmp}/i.db", extract_index)
        ctx = trial_rules.trial_context(store, trial_rules.load_trial())
        tune_collector()  # as the server does after loading
        for body in bodies(count):
            bundles.process(ctx, body, "http://x/fhir", status_for, minimal=True)
        store.close()


def counted(count: int, http: bool, folder: str) -> int:
    """Instructions callgrind counts for the workload with `count` Bundles after the warm-up."""
    out = f"{folder}/callgrind-{count}.out"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    # a fixed hash seed: dict and set layouts, and so the counts, repeat from run to run
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if not http:
        script = [sys.executable, __file__, "--run", str(count)]
        subprocess.run([*valgrind, *script], check=True, capture_output=True, env=env)
    else:
        database = f"sqlite:///{folder}/h{count}.db"
        with (
            running_server(database, prefix=tuple(valgrind), env=env, start_seconds=600) as server,
            httpx.Client(timeout=3000) as client,
        ):
            for body in bodies(count):
                client.post(server.base, content=body, headers=HEADERS).raise_for_status()
    with open(out) as f:
        totals = re.search(r"^summary: (\d+)", f.read(), re.MULTILINE)
    assert totals is not None, "callgrind wrote no summary"
    return int(totals.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", action="store_true", help="count a server process over HTTP")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)  # the counted workload
    args = parser.parse_args()
    if args.run is not None:
        in_process(args.run)
        return
    with tempfile.TemporaryDirectory() as folder:
        one, most = counted(1, args.http, folder), counted(MOST, args.http, folder)
    where = "server process over HTTP" if args.http else "in process (bundles.process)"
    per_resource = (most - one) / ((MOST - 1) * SIZE)
    print(f"transaction Bundles of {SIZE} MADRS scores, SQLite, {where}:")
    print(f"  {per_resource / 1000:,.0f}k instructions per resource")


if __name__ == "__main__":
    main()
