"""export-table benchmark: the visit-scores table of 12,000 visit rows read back from a running
server, with the table building alone timed too; optionally the same building by another
revision's fhir_bridge/mapping/columns.py for a before/after ratio.

Usage:
  python bench/table_export_bench.py [--rows 12000] [--db /tmp/fhir-bridge-table-bench.db]
      [--skip-load] [--compare-rev main --compare-rows 2600]

Loads the rows straight into the store (with their index rows): participants of 17 protocol
visits each, enrolled as import-table --enrol would, a MADRS, SDS and PHQ-9 at the visits with
outcome measures and a C-SSRS at the others. Then starts a server and times
`fhir-bridge export-table` as a process, end to end (start-up, searches, CSV), checking the
row count; and times the CSV building of the same resources in this process.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from server import running_server  # noqa: E402

from fhir_bridge.mapping import bundle_to_table, load_mappings, read_table  # noqa: E402
from fhir_bridge.mapping.columns import data_columns, header  # noqa: E402
from fhir_bridge.mapping.loader import Mappings  # noqa: E402
from fhir_bridge.mapping.protocol import research_study  # noqa: E402
from fhir_bridge.mapping.table_import import Participant, enrolment, plan  # noqa: E402
from fhir_bridge.store.indexing import extract_index  # noqa: E402
from fhir_bridge.store.sql import SQLStore  # noqa: E402

MAP = "visit-scores"
OUTCOMES = ("madrs", "sds", "phq9")


def table(rows: int, m: Mappings) -> str:
    """A visit-scores CSV of `rows` rows: participants × protocol visits."""
    cmap = m.column_map(MAP)
    rng = random.Random(7)
    columns = data_columns(cmap, m)
    lines = [",".join(header(cmap, m))]
    visits = m.protocol.visits
    for n in range(rows):
        participant, visit = divmod(n, len(visits))
        visit_spec = visits[visit]
        wanted = OUTCOMES if visit_spec.code in ("baseline", "post-treatment") else ("cssrs",)
        cells = [f"P{participant:05d}", visit_spec.code, f"2023-{1 + visit % 12:02d}-15", "", ""]
        for _, spec, item in columns:
            if spec.id not in wanted:
                cells.append("")
            elif item is None:
                cells.append("")  # computed by the import from the items
            else:
                cells.append(str(rng.randint(item.min, item.max)))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def stored(text: str, m: Mappings) -> list[dict[str, Any]]:
    """The resources import-table --enrol writes for `text`, with ids and references as the
    server stores them."""
    rows = read_table(text, MAP, m)
    study = "ResearchStudy/bench-study"
    by_subject: dict[str, list[Any]] = {}
    for row in rows:
        by_subject.setdefault(row.subject, []).append(row)
    resources: list[dict[str, Any]] = [{**research_study(m), "id": "bench-study"}]
    for subject, mine in by_subject.items():
        patient, writes = enrolment(subject, mine[0].line, study)
        more, _ = plan(mine, Participant(subject, patient, study), m)
        entries = [w.entry for w in writes + more if w.entry is not None]
        ids = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{subject}-{n}"
            for n, e in enumerate(entries)
        }
        for entry in entries:
            resource = dict(entry["resource"], id=ids[entry["fullUrl"]].split("/")[1])
            for key in ("subject", "encounter", "individual", "consent", "patient"):
                if key in resource and resource[key]["reference"] in ids:
                    resource[key] = {"reference": ids[resource[key]["reference"]]}
            resources.append(resource)
    return resources


def load(database_url: str, resources: list[dict[str, Any]]) -> None:
    store = SQLStore(database_url, extract_index)
    try:
        for first in range(0, len(resources), 2000):
            with store.session(write=True) as session:
                for resource in resources[first : first + 2000]:
                    session.put(resource, "PUT")
    finally:
        store.close()


def old_builder(rev: str) -> Any:
    """bundle_to_table of another revision's columns.py (it returns the CSV text)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:fhir_bridge/mapping/columns.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_columns.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_columns", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.bundle_to_table


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--db", default="/tmp/fhir-bridge-table-bench.db")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--compare-rev", help="time this revision's table building too")
    parser.add_argument("--compare-rows", type=int, default=2_600)
    args = parser.parse_args()
    m = load_mappings()
    resources = stored(table(args.rows, m), m)
    database_url = f"sqlite:///{args.db}"
    if not args.skip_load:
        Path(args.db).unlink(missing_ok=True)
        started = time.perf_counter()
        load(database_url, resources)
        print(f"loaded {len(resources)} resources in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    built = bundle_to_table(resources, MAP, m)
    building = time.perf_counter() - started
    print(f"table building alone: {args.rows} rows in {building:.2f} s")
    with running_server(database_url) as server, tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.csv"
        server_cpu = sum(server.worker_cpu_seconds())
        client_cpu = _children_cpu()
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "fhir_bridge", "export-table", "--server", server.base]
            + ["--out", str(out), "--timeout", "600"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
        client_cpu = _children_cpu() - client_cpu
        server_cpu = sum(server.worker_cpu_seconds()) - server_cpu
        exported = out.read_text(encoding="utf-8")
    rows = exported.count("\n") - 1
    assert rows == args.rows and exported == built.text, (rows, args.rows)
    print(
        f"export-table end to end: {rows} rows in {seconds:.2f} s wall (target: under 10 s); "
        f"CPU: command {client_cpu:.2f} s, server {server_cpu:.2f} s; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if args.compare_rev:
        small = stored(table(args.compare_rows, m), m)
        started = time.perf_counter()
        bundle_to_table(small, MAP, m)
        new = time.perf_counter() - started
        old = old_builder(args.compare_rev)
        started = time.perf_counter()
        old(small, MAP, m)
        before = time.perf_counter() - started
        print(
            f"table building of {args.compare_rows} rows: {args.compare_rev} {before:.2f} s, "
            f"this tree {new:.3f} s ({before / new:.0f}x)"
        )


if __name__ == "__main__":
    main()
