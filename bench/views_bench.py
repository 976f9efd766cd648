"""View runner rate: a scores-long view (one row per Observation component: patient key, item
code, item value) over synthetic MADRS-shaped Observations, in one process, from dicts.

The Observations are made as they are read (a generator over 1,000 shapes with distinct ids
and subjects), so the resources are never all in memory, and peak RSS shows what the runner
itself holds. Reading the resources alone is timed too, for scale.

    .venv/bin/python bench/views_bench.py [--count 200000] [--components 10] [--repeat 3]

Each figure is the best of --repeat runs (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_bridge.views import ViewDefinition, run  # noqa: E402

ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SHAPES = 1000
SCORES_LONG: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "scores_long",
    "status": "active",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "patient_id", "path": "subject.getReferenceKey(Patient)", "type": "id"}
            ]
        },
        {
            "forEach": "component",
            "column": [
                {"name": "item", "path": "code.coding.first().code", "type": "code"},
                {"name": "score", "path": "value.ofType(integer)", "type": "integer"},
            ],
        },
    ],
}


def _shape(n: int, components: int) -> dict[str, Any]:
    items = [
        {
            "code": {"coding": [{"system": ASSESSMENT, "code": f"madrs-{i}"}], "text": f"item {i}"},
            "valueInteger": (n + i) % 7,
        }
        for i in range(1, components + 1)
    ]
    return {
        "resourceType": "Observation",
        "meta": {"versionId": "1", "lastUpdated": "2026-03-02T10:15:42.123+00:00"},
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "survey"}]}],
        "code": {"coding": [{"system": ASSESSMENT, "code": "madrs-total"}], "text": "MADRS"},
        "effectiveDateTime": "2023-01-09T09:30:00+01:00",
        "valueQuantity": {"value": sum(c["valueInteger"] for c in items), "unit": "{score}"},
        "component": items,
    }


def observations(count: int, components: int) -> Iterator[dict[str, Any]]:
    shapes = [_shape(n, components) for n in range(SHAPES)]
    for n in range(count):
        yield {
            **shapes[n % SHAPES],
            "id": f"obs-{n}",
            "subject": {"reference": f"Patient/participant-{n % 2000}"},
        }


def best_seconds(repeat: int, job: Callable[[], int]) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = job()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    view = ViewDefinition.parse(SCORES_LONG)

    def rows() -> int:
        total = 0
        for _ in run(view, observations(args.count, args.components)):
            total += 1
        return total

    def read_only() -> int:
        return sum(1 for _ in observations(args.count, args.components))

    seconds, total = best_seconds(args.repeat, rows)
    assert total == args.count * args.components, total
    read_seconds, _ = best_seconds(args.repeat, read_only)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.count:,} Observations x {args.components} components = {total:,} rows, "
        f"view scores_long ({', '.join(view.columns)}), best of {args.repeat}, 1 process"
    )
    print(f"run(view, resources), rows as dicts:      {total / seconds:12,.0f} rows/s")
    print(f"                                          {args.count / seconds:12,.0f} resources/s")
    print(f"  of which making the resources:          {read_seconds / seconds:12.0%}")
    print(f"peak RSS:                                 {peak_mib:12,.0f} MiB")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
