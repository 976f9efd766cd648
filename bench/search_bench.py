"""Search benchmark: index extraction cost, bulk load, query latencies and plans.

Usage:
  python bench/search_bench.py --dialect sqlite --observations 100000 [--db /tmp/bench.db]
  python bench/search_bench.py --dialect postgresql --observations 100000 \
      [--url postgresql://postgres@127.0.0.1:5432/test]

Prints p50, p95 and p99 latencies per query. Synthetic trial data: patients with
MADRS/SDS/PHQ-9/GAD-7 score Observations (the MADRS total with its 10 item components),
written with the same index rows the store writes.
PostgreSQL runs in a fresh schema that is dropped at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_bridge.domain.search import parse_query_string, parse_search  # noqa: E402
from fhir_bridge.store.indexing import extract_index, last_updated_row  # noqa: E402
from fhir_bridge.store.schema import INDEX_TABLES, ddl  # noqa: E402
from fhir_bridge.store.search import run_search  # noqa: E402
from fhir_bridge.store.sql import SQLITE_PAGE_SIZE  # noqa: E402
from fhir_bridge.store.staging import stage  # noqa: E402

ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"
LOINC = "http://loinc.org"
CODES = [
    (ASSESSMENT, "madrs-total"),
    (ASSESSMENT, "sds-total"),
    (LOINC, "44261-6"),
    (LOINC, "70274-6"),
]


def observation(index: int, patients: int, rng: random.Random) -> dict[str, Any]:
    system, code = CODES[index % len(CODES)]
    day = 1 + rng.randrange(28)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{index}",
        "meta": {"lastUpdated": f"2025-06-01T00:00:00.{index % 1000000:06d}Z"},
        "identifier": [{"system": "https://site.example/obs", "value": f"A-{index}"}],
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
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/p{rng.randrange(patients)}"},
        "encounter": {"reference": f"Encounter/e{rng.randrange(patients * 10)}"},
        "effectiveDateTime": f"2025-{1 + rng.randrange(12):02d}-{day:02d}T10:00:00Z",
        "valueQuantity": {
            "value": rng.randrange(60),
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
    }
    if code == "madrs-total":
        resource["component"] = [
            {
                "code": {"coding": [{"system": ASSESSMENT, "code": f"madrs-{item}"}]},
                "valueInteger": rng.randrange(7),
            }
            for item in range(1, 11)
        ]
    return resource


class Target:
    def __init__(self, dialect: str, conn: Any) -> None:
        self.dialect, self.conn = dialect, conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        cursor = self.conn.execute(sql, tuple(args))
        return list(cursor.fetchall()) if cursor.description else []

    def many(self, table: str, rows: list[tuple[Any, ...]], columns: Sequence[str] = ()) -> None:
        """Insert rows into `columns` (default: all, in table order)."""
        if not rows:
            return
        names = f"({', '.join(columns)})" if columns else ""
        if self.dialect == "postgresql":
            # COPY: executemany would make bulk loading the bottleneck of the benchmark
            with self.conn.cursor() as cursor:
                with cursor.copy(f"COPY {table} {names} FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            marks = ", ".join("?" * len(rows[0]))
            self.conn.executemany(f"INSERT INTO {table} {names} VALUES ({marks})", rows)


def load(
    target: Target,
    count: int,
    patients: int,
    batch: int = 5000,
    make: Callable[[int, int, random.Random], dict[str, Any]] = observation,
) -> tuple[float, float]:
    """Insert `count` Observations made by `make`; returns (extract seconds, total seconds)."""
    rng = random.Random(7)
    extract_seconds, started = 0.0, time.perf_counter()
    for first in range(0, count, batch):
        resources = [make(i, patients, rng) for i in range(first, min(count, first + batch))]
        rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in INDEX_TABLES}
        members: dict[int, list[tuple[Any, ...]]] = {}
        base: list[tuple[Any, ...]] = []
        for seq, resource in enumerate(resources, start=first + 1):
            t0 = time.perf_counter()
            staged = stage(resource, extract_index)
            extract_seconds += time.perf_counter() - t0
            key = ("Observation", resource["id"])
            updated = last_updated_row(resource["meta"]["lastUpdated"])  # the store's
            rows["idx_date"].append((*key, updated.param, updated.low, updated.high))
            for table, staged_rows in staged.rows.items():
                rows[table].extend(staged_rows)
            members.update(staged.sets)
            base.append(
                (
                    *key,
                    1,
                    resource["meta"]["lastUpdated"],
                    False,
                    seq,
                    orjson.dumps(resource),
                    "POST",
                )
            )
        columns = [c[0] for c in target.conn.execute("SELECT * FROM resources LIMIT 0").description]
        names = (
            "resource_type",
            "id",
            "version_id",
            "last_updated",
            "deleted",
            "seq",
            "data",
            "method",
        )
        keep = [i for i, n in enumerate(names) if n in columns]
        target.many(
            "resources",
            [tuple(row[i] for i in keep) for row in base],
            [names[i] for i in keep],
        )
        for table in INDEX_TABLES:
            target.many(table, rows[table])
        # token sets shared with earlier batches are skipped
        statement = "INSERT INTO token_set_member VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        member_rows = [row for rows_of_set in members.values() for row in rows_of_set]
        if target.dialect == "postgresql":
            with target.conn.cursor() as cursor:
                cursor.executemany(statement.replace("?", "%s"), member_rows)
        else:
            target.conn.executemany(statement, member_rows)
        target.conn.commit()
        print(f"  loaded {min(count, first + batch)}", file=sys.stderr, end="\r")
    target.execute("ANALYZE")
    if target.dialect == "postgresql":
        target.conn.commit()
    return extract_seconds, time.perf_counter() - started


def timed(
    target: Target, query: Callable[[int], str], runs: int
) -> tuple[float, float, float, int]:
    """p50, p95 and p99 latency in ms over `runs` searches, and the matches found."""
    latencies, found = [], 0
    for run in range(runs):
        request = parse_search("Observation", parse_query_string(query(run)))
        t0 = time.perf_counter()
        result = run_search(target.execute, request)
        latencies.append((time.perf_counter() - t0) * 1000)
        found += len(result.matches)
        if target.dialect == "postgresql":
            target.conn.rollback()
    latencies.sort()

    def percentile(share: float) -> float:
        return latencies[max(0, int(len(latencies) * share) - 1)]

    return statistics.median(latencies), percentile(0.95), percentile(0.99), found


def explain(target: Target, query: str) -> list[str]:
    """The plan of the page query the search runs for `query`."""
    captured: list[tuple[str, Sequence[object]]] = []

    def capture(sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        if sql.startswith("SELECT COUNT(*)"):  # the plan choice probe runs for real
            return target.execute(sql, args)
        captured.append((sql, args))
        return []

    run_search(capture, parse_search("Observation", parse_query_string(query)))
    sql, args = captured[-1]
    prefix = "EXPLAIN QUERY PLAN " if target.dialect == "sqlite" else "EXPLAIN "
    rows = target.execute(prefix + sql, args)
    if target.dialect == "postgresql":
        target.conn.rollback()
    return [str(row[-1]) for row in rows]


def workload(patients: int, observations: int, seed: int) -> dict[str, Callable[[int], str]]:
    """The measured query shapes; each call draws a random patient or identifier."""
    rng = random.Random(seed)
    return {
        "subject+code": lambda _: (
            f"subject=Patient/p{rng.randrange(patients)}&code={ASSESSMENT}|madrs-total"
        ),
        "patient+date": lambda _: (
            f"patient=p{rng.randrange(patients)}&date=ge2025-06&date=lt2025-09"
        ),
        "code only, _count=20": lambda _: f"code={ASSESSMENT}|sds-total&_count=20",
        "code+status, _count=20": lambda _: f"code={ASSESSMENT}|sds-total&status=final&_count=20",
        "identifier": lambda _: f"identifier=A-{rng.randrange(observations)}",
        "component-code+subject": lambda _: (
            f"component-code=madrs-10&subject=p{rng.randrange(patients)}"
        ),
        "subject+code _sort=-date": lambda _: (
            f"subject=Patient/p{rng.randrange(patients)}&code=madrs-total&_sort=-date"
        ),
    }


def connect(args: argparse.Namespace) -> Iterator[Target]:
    if args.dialect == "sqlite":
        path = Path(args.db)
        fresh = not path.exists()
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # as the store makes its files
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if fresh:
            for statement in ddl("sqlite"):
                conn.execute(statement)
        yield Target("sqlite", conn)
        conn.close()
        return
    import psycopg

    schema = args.schema or f"bench_{uuid.uuid4().hex[:8]}"
    pg = psycopg.connect(args.url)
    pg.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    pg.execute(f"SET search_path TO {schema}")
    for statement in ddl("postgresql"):
        pg.execute(statement)
    pg.commit()
    try:
        yield Target("postgresql", pg)
    finally:
        if not args.keep:
            pg.rollback()
            pg.execute(f"DROP SCHEMA {schema} CASCADE")
            pg.commit()
        pg.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dialect", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--observations", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=0, help="default: observations / 50")
    parser.add_argument("--db", default="/tmp/fhir-bridge-search-bench.db")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="", help="PostgreSQL schema (reused if it exists)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11, help="a new seed queries cold pages")
    args = parser.parse_args()
    patients = args.patients or max(1, args.observations // 50)
    for target in connect(args):
        if not args.skip_load:
            extract, total = load(target, args.observations, patients)
            print(
                f"{args.dialect}: loaded {args.observations} Observations "
                f"({patients} patients) in {total:.1f} s; staging (index extraction) "
                f"{extract / args.observations * 1000:.3f} ms per Observation"
            )
        for name, query in workload(patients, args.observations, args.seed).items():
            median, p95, p99, found = timed(target, query, args.runs)
            print(
                f"  {name:28s} p50 {median:7.2f} ms  p95 {p95:7.2f} ms  p99 {p99:7.2f} ms  "
                f"({found / args.runs:.1f} matches/query, {args.runs} runs)"
            )
        for name, text in (
            ("subject+code", f"subject=Patient/p1&code={ASSESSMENT}|madrs-total"),
            ("code only", f"code={ASSESSMENT}|sds-total"),
        ):
            print(f"  plan of {name}:")
            for line in explain(target, text):
                print(f"    {line}")


if __name__ == "__main__":
    main()
