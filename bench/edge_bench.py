"""Cost of the HTTP edge's protections (api/hardening.py) per request: a Patient read through
the ASGI app in process, with them and without, on SQLite.

Run: `.venv/bin/python bench/edge_bench.py [--reads 3000] [--rounds 5]`
No server and no sockets: what is timed is the application alone, so the protections' share
is not hidden in network time. The two apps take turns, round after round, so that the
machine's drift falls on both alike; the rate limiter runs (its limit set out of reach).
Prints each round's CPU microseconds per read and the medians' ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
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


async def main(reads: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/edge.db"
        apps = {
            "without": make_app(url, f"{tmp}/exports", protected=False),
            "with": make_app(url, f"{tmp}/exports", protected=True),
        }
        async with (
            apps["without"].router.lifespan_context(apps["without"]),
            apps["with"].router.lifespan_context(apps["with"]),
        ):
            headers = [(b"content-type", b"application/fhir+json")]
            create = scope("POST", "/fhir/Patient", headers)
            status, body = await call(apps["with"], create, b'{"resourceType": "Patient"}')
            assert status == 201, body
            path = f"/fhir/Patient/{orjson.loads(body)['id']}"
            for app in apps.values():
                await time_reads(app, path, reads // 10)  # warm-up
            figures: dict[str, list[float]] = {name: [] for name in apps}
            for round_ in range(rounds):
                order = list(apps) if round_ % 2 == 0 else list(reversed(apps))
                for name in order:
                    figures[name].append(await time_reads(apps[name], path, reads))
    for name, values in figures.items():
        shown = " ".join(f"{v:6.1f}" for v in values)
        print(f"{name:<8} protections: {shown} us/read (median {statistics.median(values):.1f})")
    ratio = statistics.median(figures["with"]) / statistics.median(figures["without"])
    print(f"with / without: {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.reads, args.rounds))
