"""Every bench in one run, printed as one table beside fhir.resources measured in the same run.

Run: `.venv/bin/python bench/run_all.py [--quick]`. `--quick` takes a few minutes (smaller
counts: 20,000 Observations to search, export and view; the same code); without it the
search, export and view rows cover 1,000,000 Observations, loaded first, which takes far longer.
Rows: ingest of transaction Bundles over HTTP (one server process and one client, then one
process per core and four clients), validation (engine and CLI), search latency
(`Observation?subject=...&code=...`), Bulk export as stored and through the research view,
`$viewdefinition-run` over HTTP, start-up to the first answered request, and the server's
peak memory. The baseline of each row is fhir.resources R4B parse + serialize of the same
resources, in one process (for a search: of the matches one query returns; for start-up and
memory: a fresh process that parses and serializes one of them). The ratio says how many
times faster, or smaller, fhir-bridge is; below 1 it is slower, or larger.

The machine is shared and its speed drifts; compare the rows of one run, not runs of
different days. The table is Markdown, headed by the date and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_bench import export_once, participants, peak_rss_mib  # noqa: E402
from export_bench import fhir_resources_rate as stored_rate  # noqa: E402
from ingest_bench import bundle, fhir_resources_rate, post_all  # noqa: E402
from search_bench import connect, load, timed, workload  # noqa: E402
from server import fresh_database, running_server  # noqa: E402
from validate_bench import madrs_observations, measure  # noqa: E402

from tools.compiled import missing  # noqa: E402


@dataclass(frozen=True)
class Figure:
    """One row of the table: fhir-bridge's figure beside the baseline's, in one unit."""

    what: str
    ours: float
    baseline: float
    unit: str  # "resources/s", "ms", "s", "MiB", ...
    higher_is_better: bool

    @property
    def ratio(self) -> float:
        """How many times faster (or smaller) fhir-bridge is than the baseline."""
        if self.higher_is_better:
            return self.ours / self.baseline
        return self.baseline / self.ours


@dataclass(frozen=True)
class Sizes:
    bundles: int  # transaction Bundles per ingest set-up (one per server process warms up)
    bundle_size: int
    validations: int  # Observations validated
    repeat: int  # best of this many validation runs
    observations: int  # in the search, export and view database
    searches: int  # searches timed


QUICK = Sizes(
    bundles=8, bundle_size=500, validations=4000, repeat=2, observations=20_000, searches=200
)
FULL = Sizes(
    bundles=40, bundle_size=500, validations=20_000, repeat=5, observations=1_000_000, searches=200
)

# One row per Observation: every one read through the research view is one row.
OBSERVATION_ROWS: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "observation_rows",
    "status": "active",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "patient_id", "path": "subject.getReferenceKey(Patient)", "type": "id"},
                {"name": "code", "path": "code.coding.first().code", "type": "code"},
                {"name": "score", "path": "value.ofType(Quantity).value", "type": "decimal"},
            ]
        }
    ],
}


def _counted(count: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{count} {noun if count == 1 else plural}"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: Sequence[Figure], when: str, machine: str) -> str:
    """The figures as a Markdown table under a line saying when and on what they were measured."""
    lines = [
        f"Measured {when} on {machine}.",
        "",
        "| what | fhir-bridge | fhir.resources | ratio |",
        "|---|---:|---:|---:|",
    ]
    for f in figures:
        ours, baseline = _number(f.ours), _number(f.baseline)
        lines.append(f"| {f.what} | {ours} {f.unit} | {baseline} {f.unit} | {f.ratio:.1f}x |")
    return "\n".join(lines)


def machine() -> str:
    """The processor, its cores and the memory, as Linux reports them."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
        with open("/proc/meminfo") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        memory = ""
    code = "the mypyc builds" if not missing() else "plain Python (no mypyc builds)"
    python = f"Python {platform.python_version()}"
    return f"{model}, {os.cpu_count()} cores{memory}, {python}, {code}"


def ingest(sizes: Sizes) -> list[Figure]:
    """ingest_bench's two set-ups on fresh SQLite files."""
    rng = random.Random(11)
    bodies = [orjson.dumps(bundle(rng, sizes.bundle_size)) for _ in range(sizes.bundles)]
    sample = [e["resource"] for e in orjson.loads(bodies[0])["entry"][1:]]
    before = fhir_resources_rate(sample)
    runs: list[tuple[str, float]] = []
    cores = os.cpu_count() or 1
    for workers, clients in ((1, 1), (cores, 4)):
        with tempfile.TemporaryDirectory() as tmp, fresh_database(None, tmp) as database:
            run = post_all(database, bodies, workers, clients)
        count = (sizes.bundles - workers) * sizes.bundle_size
        who = f"{_counted(workers, 'server process')}, {_counted(clients, 'client')}"
        label = f"ingest, transaction Bundles of {sizes.bundle_size}, {who}"
        runs.append((label, count / run.seconds))
    baseline = (before + fhir_resources_rate(sample)) / 2
    return [Figure(label, rate, baseline, "resources/s", True) for label, rate in runs]


def validation(sizes: Sizes) -> list[Figure]:
    """validate_bench's engine and CLI rates, base R4 + the MADRS profile."""
    resources = madrs_observations(sizes.validations)
    rates = measure(resources, sizes.repeat)
    baseline = fhir_resources_rate(resources[:2000])
    return [
        Figure("validation, engine, 1 process", rates.engine_profile, baseline, "Obs/s", True),
        Figure(
            f"validation, CLI over NDJSON, {rates.cores} processes",
            rates.cli_profile,
            baseline,
            "Obs/s",
            True,
        ),
    ]


def search(sizes: Sizes, path: str) -> list[Figure]:
    """search_bench's load into a new SQLite file at `path`, then its subject+code query."""
    options = argparse.Namespace(dialect="sqlite", db=path)
    patients = max(1, sizes.observations // 50)
    query = workload(patients, sizes.observations, seed=11)["subject+code"]
    for target in connect(options):
        load(target, sizes.observations, patients)
        p50, p95, p99, found = timed(target, query, sizes.searches)
    matches = found / sizes.searches
    # the baseline: parsing and serializing the resources one query returns
    per_query = matches / stored_rate(f"sqlite:///{path}", 2000) * 1000
    label = f"search subject+code, {sizes.observations:,} Observations ({matches:.0f} matches)"
    return [
        Figure(f"{label}, p{share}", value, per_query, "ms", False)
        for share, value in ((50, p50), (95, p95), (99, p99))
    ]


def export(sizes: Sizes, database_url: str, baseline: float) -> tuple[list[Figure], float]:
    """export_bench's two exports of every Observation; also the server's peak RSS in MiB."""
    figures, peak = [], 0.0
    with tempfile.TemporaryDirectory() as folder:
        for view in ("plain", "research"):
            run = export_once(database_url, view, folder)
            label = f"Bulk $export of {run['count']:,} Observations, {view} view"
            figures.append(
                Figure(label, run["count"] / run["seconds"], baseline, "resources/s", True)
            )
            peak = max(peak, run["peak"])
    return figures, peak


def view_run(sizes: Sizes, database_url: str, baseline: float) -> tuple[Figure, float]:
    """$viewdefinition-run of a row per Observation over the research view, NDJSON, over
    HTTP; also the server's peak RSS in MiB."""
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "viewResource", "resource": OBSERVATION_ROWS},
            {"name": "_format", "valueCode": "ndjson"},
            {"name": "_limit", "valueInteger": sizes.observations},
        ],
    }
    headers = {"Content-Type": "application/fhir+json"}
    with running_server(database_url) as server:
        started, rows = time.perf_counter(), 0
        url = f"{server.base}/$viewdefinition-run"
        with httpx.stream("POST", url, json=body, headers=headers, timeout=3600) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                rows += 1 if line else 0
        seconds = time.perf_counter() - started
        peak = peak_rss_mib(server.pid)
    assert rows == sizes.observations, rows
    label = f"$viewdefinition-run, a row per Observation, {rows:,} rows, research view"
    return Figure(label, rows / seconds, baseline, "resources/s", True), peak


def start_up(database_url: str) -> tuple[float, float]:
    """Seconds from starting `fhir-bridge serve` to its first answer (GET /metadata), and
    its RSS then, in MiB."""
    started = time.perf_counter()
    with running_server(database_url) as server:
        return time.perf_counter() - started, peak_rss_mib(server.pid)


# VmHWM, not getrusage: ru_maxrss survives exec, so a child would report its parent's size
BASELINE_PROCESS = """
import sys
from fhir_bridge.domain.fhir import model_class
model_class("Observation").model_validate_json(sys.stdin.buffer.read()).model_dump_json()
with open("/proc/self/status") as f:
    print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024)
"""


def baseline_process(resource: dict[str, Any]) -> tuple[float, float]:
    """Seconds a fresh Python process takes to parse and serialize `resource` with
    fhir.resources and exit, and its peak RSS in MiB."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BASELINE_PROCESS],
        input=orjson.dumps(resource),
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - started, float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: a few minutes")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    # servers started here answer without tokens, whatever the default
    os.environ["FHIR_BRIDGE_AUTH"] = "disabled"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    figures: list[Figure] = []

    def step(name: str) -> None:
        print(f"{datetime.now(UTC):%H:%M:%S} {name}", file=sys.stderr, flush=True)

    step("ingest")
    figures += ingest(sizes)
    step("validation")
    figures += validation(sizes)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/run-all-{uuid.uuid4().hex[:8]}.db"
        step(f"search: loading {sizes.observations:,} Observations")
        figures += search(sizes, path)
        database_url = f"sqlite:///{path}"
        participants(database_url, max(1, sizes.observations // 50))
        baseline = stored_rate(database_url, 2000)
        step("export")
        exported, export_peak = export(sizes, database_url, baseline)
        figures += exported
        step("$viewdefinition-run")
        run, view_peak = view_run(sizes, database_url, baseline)
        figures.append(run)
        step("start-up")
        seconds, rss = start_up(database_url)
    sample = madrs_observations(1)[0]
    baseline_seconds, baseline_rss = baseline_process(sample)
    figures.append(
        Figure("start-up to the first answered request", seconds, baseline_seconds, "s", False)
    )
    figures.append(Figure("server RSS after start-up", rss, baseline_rss, "MiB", False))
    figures.append(
        Figure(
            "server peak RSS, export and view run",
            max(export_peak, view_peak),
            baseline_rss,
            "MiB",
            False,
        )
    )
    print(table(figures, when, machine()))


if __name__ == "__main__":
    main()
