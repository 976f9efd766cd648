"""Validation throughput: MADRS score Observations against base R4 plus the MADRS profile.

Prints, from one run over the same resources:
  engine      Validator.validate on parsed dicts, one process (base only, then base + profile)
  CLI path    validate_paths over an NDJSON file (parsing included), all cores, base only
              and base + profile
  reference   fhir.resources R4B model_validate on the same dicts, one process

    .venv/bin/python bench/validate_bench.py [--count 20000] [--repeat 5]

Each figure is the best of --repeat runs (the machine may be shared).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_bridge.domain.fhir import model_class  # noqa: E402
from fhir_bridge.mapping.loader import load_mappings  # noqa: E402
from fhir_bridge.mapping.observations import score_observation  # noqa: E402
from fhir_bridge.services.validate import validate_paths  # noqa: E402
from fhir_bridge.validation import Validator, get_validator  # noqa: E402


def madrs_observations(count: int) -> list[dict[str, Any]]:
    """`count` MADRS score Observations as the trial produces them (10 item components).
    Item scores are drawn at random (0-6 each), so item lists practically never repeat."""
    m = load_mappings()
    spec = m.instrument("madrs")
    rng = random.Random(7)
    out = []
    for n in range(count):
        values = {item.link_id: rng.randint(0, 6) for item in spec.items}
        obs = score_observation(
            spec,
            values,
            sum(values.values()),
            subject=f"Patient/p{n % 97}",
            effective=f"2026-03-{1 + n % 28:02d}T10:00:00+01:00",
            encounter=f"Encounter/e{n}",
            derived_from=f"QuestionnaireResponse/q{n}",
            study="ResearchStudy/psykforsk-mat-mdd",
        )
        obs["id"] = f"madrs-{n}"
        out.append(obs)
    return out


def best_rate(count: int, repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


class ValidationRates(NamedTuple):
    """Observations per second of one run over the same resources."""

    engine_base: float  # Validator.validate, base R4 only, one process
    engine_profile: float  # ... base R4 + MADRS profile
    cli_base: float  # validate_paths over NDJSON, every core, base only
    cli_profile: float  # ... base + profile
    reference: float  # fhir.resources R4B model_validate, one process
    cores: int


def measure(resources: list[dict[str, Any]], repeat: int) -> ValidationRates:
    """Every rate of this bench over `resources`, each the best of `repeat` runs (the CLI's of
    half as many)."""
    m = load_mappings()
    base = Validator()
    profiled = get_validator()
    profiled.add_profiles(m.conformance_resources())
    sample = profiled.validate(resources[0])
    assert not [i for i in sample if i.is_error], sample

    def engine(validator: Validator) -> Callable[[], object]:
        return lambda: [validator.validate(r) for r in resources]

    base_rate = best_rate(len(resources), repeat, engine(base))
    profile_rate = best_rate(len(resources), repeat, engine(profiled))

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "madrs.ndjson"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))

        def cli(validator: Validator) -> Callable[[], object]:
            return lambda: validate_paths(
                [path], "text", io.StringIO(), io.StringIO(), validator=validator, workers=cores
            )

        cli_base_rate = best_rate(len(resources), max(1, repeat // 2), cli(base))
        cli_rate = best_rate(len(resources), max(1, repeat // 2), cli(profiled))

    model = model_class("Observation")
    subset = resources[: min(2000, len(resources))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference_rate = best_rate(
            len(subset), repeat, lambda: [model.model_validate(r) for r in subset]
        )
    return ValidationRates(base_rate, profile_rate, cli_base_rate, cli_rate, reference_rate, cores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rates = measure(madrs_observations(args.count), args.repeat)
    cores = rates.cores
    print(f"{args.count} MADRS Observations (10 components each), best of {args.repeat}")
    print(f"engine, base R4 only, 1 process:            {rates.engine_base:10,.0f} Obs/s")
    print(f"engine, base R4 + MADRS profile, 1 process: {rates.engine_profile:10,.0f} Obs/s")
    print(f"CLI validate_paths NDJSON, base only, {cores} proc: {rates.cli_base:10,.0f} Obs/s")
    print(f"CLI validate_paths NDJSON, + profile, {cores} proc: {rates.cli_profile:10,.0f} Obs/s")
    print(f"fhir.resources R4B model_validate, 1 proc:  {rates.reference:10,.0f} Obs/s")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
