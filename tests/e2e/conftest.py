"""A real uvicorn server in a subprocess on a free port, driven over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server_url(database_url: str) -> Iterator[str]:
    with running_server(database_url) as url:
        yield url


class ServerURL(str):
    """A running server's FHIR base URL, with its process (a test may kill it)."""

    process: subprocess.Popen[bytes]


@contextmanager
def running_server(
    database_url: str, demo: bool = False, workers: int = 1, **settings: str
) -> Iterator[ServerURL]:
    """`fhir-bridge serve` in a subprocess; yields its FHIR base URL. `settings` are more
    FHIR_BRIDGE_ variables (export_dir=...)."""
    port = _free_port()
    env = {**os.environ, "FHIR_BRIDGE_DATABASE_URL": database_url, "FHIR_BRIDGE_DEMO": str(demo)}
    env.update({f"FHIR_BRIDGE_{name.upper()}": value for name, value in settings.items()})
    command = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_bridge", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = ServerURL(f"http://127.0.0.1:{port}/fhir")
    url.process = process
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                _, err = process.communicate(timeout=5)
                raise RuntimeError(f"server did not start: {err.decode()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`fhir-bridge ARGS` in a subprocess, `env` added to this environment."""
    return subprocess.run(
        [sys.executable, "-m", "fhir_bridge", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
