"""bench/run_all.py's table: each figure beside its baseline and the ratio, headed by when and
where. (Running the benches takes minutes: `bench/run_all.py --quick`, see docs/performance.md.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RUN_ALL = Path(__file__).resolve().parents[2] / "bench" / "run_all.py"


def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)  # puts bench/ on sys.path for its siblings
    finally:
        sys.path[:] = path
    return module


def test_table_puts_each_figure_beside_its_baseline_and_ratio() -> None:
    bench = run_all()
    figures = [
        bench.Figure("ingest, 1 process", 7660.4, 1120.0, "resources/s", True),
        bench.Figure("search, p95", 1.07, 18.5, "ms", False),
        bench.Figure("server peak RSS", 146.0, 73.0, "MiB", False),
    ]
    assert bench.table(figures, "2026-12-08 10:00 UTC", "2 cores") == "\n".join(
        [
            "Measured 2026-12-08 10:00 UTC on 2 cores.",
            "",
            "| what | fhir-bridge | fhir.resources | ratio |",
            "|---|---:|---:|---:|",
            "| ingest, 1 process | 7,660 resources/s | 1,120 resources/s | 6.8x |",
            "| search, p95 | 1.07 ms | 18.5 ms | 17.3x |",
            "| server peak RSS | 146 MiB | 73.0 MiB | 0.5x |",
        ]
    )
