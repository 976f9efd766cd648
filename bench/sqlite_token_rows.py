"""What SQLite itself costs to store the token values of MADRS Observations, per table layout.

Run: `.venv/bin/python bench/sqlite_token_rows.py [--bundles 40]`
Stores the 13 token values of each MADRS score Observation (category, code, 10 item codes,
status) in transactions of 500 resources, with the server's pragmas (WAL, synchronous=FULL,
64 MiB cache) and no Python work around the inserts: the floor under the write lock for these
values. Layouts: the server's token sets (4 rows per resource, the values stored once per set),
and one row per value as before schema 3: a heap and two B-trees, without the probe index, heap
only, 8 KiB pages, and a WITHOUT ROWID table keyed like the match index.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid

COLUMNS = "resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, "
MATCH = "CREATE INDEX m ON idx_token (resource_type, param, code, system, id)"
PROBE = "CREATE INDEX p ON idx_token (resource_type, id, param, code, system)"
SETS = [
    "CREATE TABLE idx_token_set (resource_type TEXT NOT NULL, id TEXT NOT NULL, "
    "param TEXT NOT NULL, set_id INTEGER NOT NULL)",
    "CREATE INDEX m ON idx_token_set (resource_type, param, set_id, id)",
    "CREATE INDEX p ON idx_token_set (resource_type, id, param, set_id)",
]
LAYOUTS: dict[str, tuple[int, list[str]]] = {
    "token sets (the server's)": (4096, SETS),
    "one row per value (heap + 2 B-trees)": (
        4096,
        [f"CREATE TABLE idx_token ({COLUMNS}system TEXT, code TEXT, text TEXT)", MATCH, PROBE],
    ),
    "one row per value, no probe index": (
        4096,
        [f"CREATE TABLE idx_token ({COLUMNS}system TEXT, code TEXT, text TEXT)", MATCH],
    ),
    "one row per value, heap only": (
        4096,
        [f"CREATE TABLE idx_token ({COLUMNS}system TEXT, code TEXT, text TEXT)"],
    ),
    "one row per value, 8 KiB pages": (
        8192,
        [f"CREATE TABLE idx_token ({COLUMNS}system TEXT, code TEXT, text TEXT)", MATCH, PROBE],
    ),
    "one row per value, WITHOUT ROWID": (
        4096,
        [
            f"CREATE TABLE idx_token ({COLUMNS}system TEXT NOT NULL, code TEXT NOT NULL, "
            "text TEXT NOT NULL, PRIMARY KEY (resource_type, param, code, system, id, text)) "
            "WITHOUT ROWID",
            PROBE,
        ],
    ),
}
ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def set_rows(resource_id: str) -> list[tuple[object, ...]]:
    """The resource's token set rows; the sets' members are stored once, before the run."""
    params = ("category", "code", "status", "component-code")
    return [("Observation", resource_id, param, n) for n, param in enumerate(params)]


def rows(resource_id: str) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = [
        ("Observation", resource_id, "category", CATEGORY, "survey", ""),
        ("Observation", resource_id, "code", ASSESSMENT, "madrs-total", "madrs"),
        ("Observation", resource_id, "status", "", "final", ""),
    ]
    for item in range(1, 11):
        out.append(
            ("Observation", resource_id, "component-code", ASSESSMENT, f"madrs-{item}", "item")
        )
    return out


def cost(page_size: int, ddl: list[str], bundles: int, folder: str) -> float:
    """Microseconds per resource for inserting and committing its token rows."""
    conn = sqlite3.connect(f"{folder}/{uuid.uuid4().hex}.db", isolation_level=None)
    for pragma in (
        f"page_size={page_size}",
        "journal_mode=WAL",
        "synchronous=FULL",
        "cache_size=-65536",
        "wal_autocheckpoint=16384",
    ):
        conn.execute(f"PRAGMA {pragma}")
    for statement in ddl:
        conn.execute(statement)
    spent = 0.0
    for n in range(bundles):
        # time-ordered ids, as the server's UUIDv7 ids
        make, table = (set_rows, "idx_token_set") if ddl is SETS else (rows, "idx_token")
        batch = [r for i in range(500) for r in make(f"{n:08d}-{i:04d}-{uuid.uuid4()}")]
        marks = ", ".join("?" * len(batch[0]))
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", batch)
        conn.execute("COMMIT")
        spent += time.perf_counter() - started
    conn.close()
    return spent / (bundles * 500) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=40)
    args = parser.parse_args()
    print(f"13 token values per MADRS Observation, transactions of 500, {args.bundles} of them")
    with tempfile.TemporaryDirectory() as folder:
        for name, (page_size, ddl) in LAYOUTS.items():
            micros = cost(page_size, ddl, args.bundles, folder)
            print(f"  {name:38} {micros:6.1f} µs per resource")


if __name__ == "__main__":
    main()
