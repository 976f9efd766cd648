"""Research view rate: MADRS score Observations, bytes -> parse -> ResearchView.apply -> bytes.

The Observations are those of examples/trial/*.json (transaction Bundles), put in stored form
as the server keeps them: an id, relative references instead of urn:uuid, meta.versionId and
meta.lastUpdated. They are repeated to --count with distinct ids, encounters and source
QuestionnaireResponses (the subjects stay the trial's 12), so the pseudonym caches see what an
export sees. Each run starts a new ResearchView, with cold caches.
For scale, the same run measures fhir.resources R4B parse + serialize of the same bytes
(structure only), and the ratio of the two.

    .venv/bin/python bench/research_view_bench.py [--count 20000] [--repeat 5]

Each figure is the best of --repeat runs (the machine may be shared), with the garbage
collector tuned as the server tunes it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_bridge.api.app import tune_collector  # noqa: E402
from fhir_bridge.domain.fhir import model_class  # noqa: E402
from fhir_bridge.pseudonym import ResearchView, load_policy  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "trial"
KEY = b"research-view-bench-key-32-bytes"


def _stored(resource: Any, ids: dict[str, str]) -> Any:
    """`resource` with urn:uuid references replaced by the "Type/id" the server assigns."""
    if isinstance(resource, dict):
        return {
            k: ids.get(v, v) if k == "reference" else _stored(v, ids) for k, v in resource.items()
        }
    if isinstance(resource, list):
        return [_stored(item, ids) for item in resource]
    return resource


def madrs_observations() -> list[dict[str, Any]]:
    """The trial's MADRS score Observations (10 item components each), in stored form."""
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        entries = orjson.loads(path.read_bytes())["entry"]
        ids = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'].rsplit(':', 1)[1]}"
            for e in entries
        }
        for entry in entries:
            resource = entry["resource"]
            codes = [c.get("code") for c in resource.get("code", {}).get("coding", [])]
            if resource["resourceType"] != "Observation" or "component" not in resource:
                continue
            if "madrs-total" not in codes:
                continue
            stored = _stored(resource, ids)
            stored["id"] = ids[entry["fullUrl"]].split("/")[1]
            stored["meta"] = {
                "versionId": "1",
                "lastUpdated": "2026-03-02T10:15:42.123+00:00",
                **stored["meta"],
            }
            out.append(stored)
    return out


def workload(count: int) -> list[tuple[bytes, str]]:
    """`count` (JSON bytes, patient id) pairs: the examples repeated with distinct ids."""
    base = madrs_observations()
    out = []
    for n in range(count):
        obs = dict(base[n % len(base)])
        obs["id"] = f"{obs['id']}-{n}"
        obs["encounter"] = {"reference": f"{obs['encounter']['reference']}-{n}"}
        obs["derivedFrom"] = [{"reference": f"{obs['derivedFrom'][0]['reference']}-{n}"}]
        out.append((orjson.dumps(obs), obs["subject"]["reference"].split("/")[1]))
    return out


def best_seconds(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    policy = load_policy()
    work = workload(args.count)
    parsed = [(orjson.loads(payload), patient) for payload, patient in work]
    loads, dumps = orjson.loads, orjson.dumps
    # as a server process runs (both sides alike): the workload is not rescanned by every
    # collection, and the young generation holds a resource's worth of allocations
    tune_collector()

    def bytes_to_bytes() -> None:
        apply = ResearchView(policy, KEY).apply
        for payload, patient in work:
            dumps(apply(loads(payload), patient))

    def apply_only() -> None:
        apply = ResearchView(policy, KEY).apply
        for resource, patient in parsed:
            apply(resource, patient)

    def orjson_only() -> None:
        for payload, _ in work:
            dumps(loads(payload))

    ours = args.count / best_seconds(args.repeat, bytes_to_bytes)
    apply_us = best_seconds(args.repeat, apply_only) / args.count * 1e6
    orjson_us = best_seconds(args.repeat, orjson_only) / args.count * 1e6

    model = model_class("Observation")
    sample = [payload for payload, _ in work[: min(2000, args.count)]]

    def reference() -> None:
        for payload in sample:
            model.model_validate_json(payload).model_dump_json()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        baseline = len(sample) / best_seconds(args.repeat, reference)

    size = sum(len(payload) for payload, _ in work) / len(work)
    print(
        f"{args.count} MADRS Observations ({len(madrs_observations())} from examples/trial, "
        f"10 components, {size:,.0f} bytes each), best of {args.repeat}, 1 process"
    )
    print(f"research view, bytes -> orjson -> apply -> orjson -> bytes: {ours:10,.0f} resources/s")
    print(f"  of which ResearchView.apply:                              {apply_us:10.1f} µs each")
    print(f"  of which orjson loads + dumps:                            {orjson_us:10.1f} µs each")
    print(
        f"fhir.resources R4B parse + serialize, same bytes:          {baseline:10,.0f} resources/s"
    )
    print(f"ratio research view / fhir.resources:                      {ours / baseline:10.1f} x")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
