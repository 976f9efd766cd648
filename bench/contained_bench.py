"""Validation time of a Patient with n contained Organizations, each named by a `#` reference
from Patient.generalPractitioner: the cost of local references as n grows.

    .venv/bin/python bench/contained_bench.py [--sizes 1000 4000 16000] [--repeat 3]

Prints per n the body's size, the best of --repeat validations (base R4 validator, in this
process) and the time per contained resource, which stays flat when the work is linear in n;
and the time of the body-shape check (domain/cost.py) that refuses such bodies over budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_bridge.validation import get_validator  # noqa: E402


def patient(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "contained": [
            {"resourceType": "Organization", "id": f"o{i}", "name": f"Clinic {i}"} for i in range(n)
        ],
        "generalPractitioner": [{"reference": f"#o{i}"} for i in range(n)],
    }


def best_seconds(repeat: int, run: Any) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    validator = get_validator()
    try:
        from fhir_bridge.domain.cost import Limits, check_shape
    except ImportError:  # a checkout from before the body-shape budget
        check_shape = None
    for n in args.sizes:
        body = patient(n)
        size = len(orjson.dumps(body))
        issues = validator.validate(body)
        errors = [i for i in issues if i.is_error]
        seconds = best_seconds(args.repeat, lambda body=body: validator.validate(body))
        line = (
            f"n={n:>6}  {size / 1e6:5.2f} MB  validate {seconds:8.3f} s  "
            f"{seconds / n * 1e6:7.1f} µs per contained  errors={len(errors)}"
        )
        if check_shape is not None:
            unbounded = Limits(max_contained=10**9, max_references=10**9, max_array_items=10**9)
            shape = best_seconds(
                args.repeat, lambda body=body, limits=unbounded: check_shape(body, limits)
            )
            line += f"  shape check {shape * 1e3:6.1f} ms"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
