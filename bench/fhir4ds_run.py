"""fhir4ds 0.5.1 on NDJSON: load into DuckDB, run one ViewDefinition, write CSV. Run by
bench/view_run_bench.py with the Python of fhir4ds's own virtual environment; prints one JSON
line: rows, load_seconds, query_seconds, peak (MiB).

    /work/fhir4ds-venv/bin/python bench/fhir4ds_run.py IN.ndjson VIEW.json OUT.csv

DuckDB's json extension is built into its wheel; fhir4ds asks DuckDB to INSTALL it, which
needs the network, so that one statement is skipped here (LOAD still runs).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import duckdb
from fhir4ds.datastore import ConnectedDatabase, FHIRDataStore
from fhir4ds.dialects import DuckDBDialect


class _Offline:
    """A DuckDB connection that skips `INSTALL json`."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().startswith("INSTALL json"):
            sql = sql.replace("INSTALL json;", "")
        return self._connection.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def main() -> None:
    ndjson, view_path, out = sys.argv[1:4]
    view = json.loads(open(view_path).read())
    started = time.perf_counter()
    store = FHIRDataStore(DuckDBDialect(connection=_Offline(duckdb.connect())))
    store.load_from_json_file(ndjson)
    loaded = time.perf_counter()
    database = ConnectedDatabase(store, "DuckDB")
    database.execute_to_csv(view, out)
    done = time.perf_counter()
    with open(out, "rb") as f:
        rows = sum(1 for _ in f) - 1  # the header
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {
        "rows": rows,
        "load_seconds": loaded - started,
        "query_seconds": done - loaded,
        "peak": peak,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
