"""Cost of reading a request body as sent (domain/fhir_json.loads: repeated keys refused,
decimals kept as their text) against what parse_json did before (orjson.loads, then
orjson.dumps to refuse nesting it could not store), on the ingest bench's Bundles.

Run: `.venv/bin/python bench/json_bench.py`
Three bodies of the same Bundle of 500 MADRS scores: as the bench posts it (compact, no
escapes: the fast path), with a `\\u00e9` escape in one string (escapes rule the fast path
out: the text is read again), and with one decimal written `1.50` (read again, keeping it).
Each figure is the best of several timed loops in CPU time of this process: what the code
costs, whatever else the machine runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import orjson
from ingest_bench import bundle

from fhir_bridge.domain.fhir_json import loads

LOOPS, REPEATS = 20, 7


def before(body: bytes) -> Any:
    parsed = orjson.loads(body)
    orjson.dumps(parsed)
    return parsed


def best_ms(read: Callable[[bytes], Any], body: bytes) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.process_time()
        for _ in range(LOOPS):
            read(body)
        timings.append((time.process_time() - started) / LOOPS)
    return min(timings) * 1000


def main() -> None:
    plain = orjson.dumps(bundle(random.Random(11), 500))
    escaped = plain.replace(b'"female"', b'"f\\u00e9male"', 1)
    decimal = plain.replace(b'"value":', b'"value":1.50,"valueX":', 1)
    assert escaped != plain and decimal != plain
    print(f"a transaction Bundle of 500 MADRS scores, {len(plain) / 1024:.0f} KiB:")
    for name, body in (("as posted", plain), ("one \\u escape", escaped), ("one 1.50", decimal)):
        base, kept = best_ms(before, body), best_ms(loads, body)
        print(
            f"  {name:14} before {base:6.2f} ms   fhir_json.loads {kept:6.2f} ms"
            f"   {kept / base:4.2f}x"
        )


if __name__ == "__main__":
    main()
