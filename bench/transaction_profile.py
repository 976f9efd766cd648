"""Where a transaction's time goes: in process, per resource, outside and under the write lock.

Run: `.venv/bin/python bench/transaction_profile.py [--bundles 16] [--size 500]`
Posts the ingest bench's transaction Bundles (MADRS score Observations) straight to the
service layer on a fresh SQLite file, with the server's validator, rules and indexing; no HTTP.
What runs under the write lock is serialised between server processes; the rest spreads over
the cores with `serve --workers`.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from ingest_bench import bundle

from fhir_bridge.api.app import tune_collector
from fhir_bridge.api.handlers import status_for
from fhir_bridge.services import bundles, trial_rules
from fhir_bridge.store import sql
from fhir_bridge.store.base import StoreSession
from fhir_bridge.store.indexing import extract_index
from fhir_bridge.store.sql import SQLStore


class TimedStore(SQLStore):
    """SQLStore that adds up the seconds its write sessions are open, and of them the seconds
    the database spends inserting rows (SQLSession._many: executemany, COPY)."""

    locked = 0.0
    inserting = 0.0

    @contextmanager
    def session(self, write: bool = False, migrate: bool = False) -> Iterator[StoreSession]:
        started = time.perf_counter()
        with super().session(write, migrate) as session:
            yield session
        if write:
            self.locked += time.perf_counter() - started


def _timed_inserts() -> None:
    many = sql.SQLSession._many

    def timed(session: sql.SQLSession, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        many(session, *args, **kwargs)
        TimedStore.inserting += time.perf_counter() - started

    sql.SQLSession._many = timed  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=16)
    parser.add_argument("--size", type=int, default=500)
    args = parser.parse_args()
    trial = trial_rules.load_trial()
    with tempfile.TemporaryDirectory() as tmp:
        store = TimedStore(f"sqlite:///{tmp}/t.db", extract_index)
        ctx = trial_rules.trial_context(store, trial)
        tune_collector()  # as the server does after loading
        rng = random.Random(11)
        bodies = [orjson.dumps(bundle(rng, args.size)) for _ in range(args.bundles)]

        def post(body: bytes) -> None:
            bundles.process(ctx, body, "http://x/fhir", status_for, minimal=True)

        _timed_inserts()
        post(bodies[0])  # warm-up
        store.locked = TimedStore.inserting = 0.0
        started, cpu_started = time.perf_counter(), time.process_time()
        for body in bodies[1:]:
            post(body)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        store.close()
    count = (args.bundles - 1) * args.size
    total, locked = elapsed / count * 1e6, store.locked / count * 1e6
    inserting = TimedStore.inserting / count * 1e6
    print(f"transaction Bundles of {args.size}, SQLite, in process, per resource:")
    print(f"  total {total:6.0f} µs   under the write lock {locked:5.0f} µs")
    print(f"  of which the database inserting rows {inserting:5.0f} µs")
    # on a machine other work shares, this process's CPU time moves less than its wall time
    print(f"  CPU time of this process {cpu / count * 1e6:6.0f} µs")
    cores = os.cpu_count() or 1
    bound = 1e6 / max(total / cores, locked)
    print(f"  bound with one server process per core ({cores}): {bound:,.0f} resources/s")


if __name__ == "__main__":
    main()
