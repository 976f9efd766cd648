"""What SQLite itself costs to store the token rows of MADRS Observations, per table layout.

Run: `.venv/bin/python bench/sqlite_token_rows.py [--bundles 40]`
Inserts the 13 token rows of each MADRS score Observation (category, code, 10 item codes,
status) in transactions of 500 resources, with the server's pragmas (WAL, synchronous=FULL,
64 MiB cache) and no Python work around the inserts: the floor under the write lock for these
rows. Layouts: the server's (a heap and two B-trees), without the probe index, heap only,
8 KiB pages, and a WITHOUT ROWID table keyed like the match index.
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
LAYOUTS: dict[str, tuple[int, list[str]]] = {
    "server (heap + match + probe)": (
        4096,
        [f"CREATE TABLE idx_token ({COLUMNS}system TEXT, code TEXT, text TEXT)", MATCH, PROBE],
    ),
    "heap + match index only": (
        4096,
        [f"CREATE TABLE idx_token ({COLUMNS}system TEXT, code TEXT, text TEXT)", MATCH],
    ),
    "heap only": (4096, [f"CREATE TABLE idx_token ({COLUMNS}system TEXT, code TEXT, text TEXT)"]),
    "server, 8 KiB pages": (
        8192,
        [f"CREATE TABLE idx_token ({COLUMNS}system TEXT, code TEXT, text TEXT)", MATCH, PROBE],
    ),
    "WITHOUT ROWID + probe": (
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


def rows(resource_id: str) -> list[tuple[str, ...]]:
    out = [
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
        batch = [r for i in range(500) for r in rows(f"{n:08d}-{i:04d}-{uuid.uuid4()}")]
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO idx_token VALUES (?, ?, ?, ?, ?, ?)", batch)
        conn.execute("COMMIT")
        spent += time.perf_counter() - started
    conn.close()
    return spent / (bundles * 500) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=40)
    args = parser.parse_args()
    print(f"13 token rows per MADRS Observation, transactions of 500, {args.bundles} of them")
    with tempfile.TemporaryDirectory() as folder:
        for name, (page_size, ddl) in LAYOUTS.items():
            micros = cost(page_size, ddl, args.bundles, folder)
            print(f"  {name:32} {micros:6.1f} µs per resource")


if __name__ == "__main__":
    main()
