"""Cost of the HTTP edge's protections (api/hardening.py) per request: a Patient read through
the ASGI app in process, with them and without, on SQLite.

Run: `.venv/bin/python bench/edge_bench.py [--reads 3000] [--rounds 5] [--instructions]`
No server and no sockets: what is timed is the application alone, so the protections' share
is not hidden in network time. The two apps take turns, round after round, so that the
machine's drift falls on both alike; the rate limiter runs (its limit set out of reach), and
CORS, with an origin configured. Prints each round's CPU microseconds per read and the
medians' ratio. On a machine shared with other work these move by a factor of two from round
to round; `--instructions` counts instead, under callgrind (minutes): each app alone, with
`--reads` and three times as many reads after the warm-up, the difference divided by the
extra reads; start-up cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from starlette.types import Message  # noqa: E402

from fhir_bridge.api import hardening  # noqa: E402
from fhir_bridge.api.app import create_app  # noqa: E402
from fhir_bridge.config import Settings  # noqa: E402

EDGE = (
    hardening.RateLimit,
    hardening.HeadAsGet,
    hardening.CORS,
    hardening.HostAllowList,
    hardening.SecurityHeaders,
)


def make_app(database_url: str, export_dir: str, protected: bool) -> FastAPI:
    settings = Settings(
        database_url=database_url,
        export_dir=export_dir,
        rate_limit_per_second=1e9,
        cors_origins=["https://dashboard.example.org"],
    )
    app = create_app(settings)
    if not protected:
        app.user_middleware = [m for m in app.user_middleware if m.cls not in EDGE]
    return app


def scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost:8080"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def call(app: FastAPI, request: dict[str, Any], body: bytes = b"") -> tuple[int, bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(request, receive, send)
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], content


async def time_reads(app: FastAPI, path: str, reads: int) -> float:
    """CPU microseconds per read (the process's own time: other loads on the machine count less)."""
    request = scope("GET", path, [])
    started = time.process_time()
    for _ in range(reads):
        status, _ = await call(app, dict(request))
        assert status == 200, status
    return (time.process_time() - started) / reads * 1e6


async def main(reads: int, rounds: int, only: str | None = None) -> None:
    """Both apps in turns; with `only`, that app alone, one round (the counted workload)."""
    names = [only] if only else ["without", "with"]
    rounds = 1 if only else rounds
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/edge.db"
        apps = {name: make_app(url, f"{tmp}/exports", name == "with") for name in names}
        async with AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            headers = [(b"content-type", b"application/fhir+json")]
            create = scope("POST", "/fhir/Patient", headers)
            first = next(iter(apps.values()))
            status, body = await call(first, create, b'{"resourceType": "Patient"}')
            assert status == 201, body
            path = f"/fhir/Patient/{orjson.loads(body)['id']}"
            for app in apps.values():
                await time_reads(app, path, 100)  # warm-up
            figures: dict[str, list[float]] = {name: [] for name in apps}
            for round_ in range(rounds):
                order = list(apps) if round_ % 2 == 0 else list(reversed(apps))
                for name in order:
                    figures[name].append(await time_reads(apps[name], path, reads))
    if only:
        return
    for name, values in figures.items():
        shown = " ".join(f"{v:6.1f}" for v in values)
        print(f"{name:<8} protections: {shown} us/read (median {statistics.median(values):.1f})")
    ratio = statistics.median(figures["with"]) / statistics.median(figures["without"])
    print(f"with / without: {ratio:.3f}")


def counted(only: str, reads: int, folder: str) -> int:
    """Instructions callgrind counts for one app's start-up, warm-up and `reads` reads."""
    out = f"{folder}/callgrind-{only}-{reads}.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    command += [__file__, "--only", only, "--reads", str(reads)]
    # a fixed hash seed: dict and set layouts, and so the counts, repeat from run to run
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(command, check=True, capture_output=True, env=env)
    with open(out) as f:
        totals = re.search(r"^summary: (\d+)", f.read(), re.MULTILINE)
    assert totals is not None, "callgrind wrote no summary"
    return int(totals.group(1))


def instructions(reads: int) -> None:
    per_read = {}
    with tempfile.TemporaryDirectory() as folder:
        for only in ("without", "with"):
            extra = counted(only, 3 * reads, folder) - counted(only, reads, folder)
            per_read[only] = extra / (2 * reads)
            print(f"{only:<8} protections: {per_read[only] / 1000:,.1f}k instructions/read")
    print(f"with / without: {per_read['with'] / per_read['without']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    parser.add_argument("--only", choices=("with", "without"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions:
        instructions(args.reads)
    else:
        asyncio.run(main(args.reads, args.rounds, args.only))
