"""Starts fhir-bridge under uvicorn in a subprocess on a free port, for the bench scripts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import httpx
import psycopg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str  # the FHIR base URL
    pid: int  # uvicorn's main process; with several workers, their parent

    def worker_cpu_seconds(self) -> list[float]:
        """CPU time each worker process has used so far (the main process alone when there
        are no workers), in the order of their process ids. Differences over a run show how
        the work was spread: keep-alive connections stay with the worker that accepted them."""
        children = _children(self.pid)
        return [_cpu_seconds(pid) for pid in sorted(children or [self.pid])]


def _children(pid: int) -> list[int]:
    """Worker processes of uvicorn's main process (not multiprocessing's resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        pids = [int(p) for p in f.read().split()]
    return [p for p in pids if b"resource_tracker" not in _cmdline(p)]


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextmanager
def running_server(
    database_url: str,
    workers: int = 1,
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    start_seconds: float = 60,
    checkout: str | None = None,
) -> Iterator[Server]:
    """Yields the server once every worker process has started; stops the
    server afterwards. `prefix` runs the server under another command (valgrind), `env`
    replaces the environment, `checkout` serves the code of another checkout (built in place)
    instead of this one.

    The workers share the listening socket, and a worker still starting accepts nothing: a
    client that connected then would stay with the first worker for good (seen here: runs
    with 2 workers at the rate of 1, all 4 keep-alive connections on one process)."""
    port = free_port()
    env = {**(os.environ if env is None else env), "FHIR_BRIDGE_DATABASE_URL": database_url}
    env.setdefault("FHIR_BRIDGE_AUTH", "disabled")  # measured without, unless a bench says so
    # one client at full speed is what a bench measures, not the per-client rate limit
    env.setdefault("FHIR_BRIDGE_RATE_LIMIT_PER_SECOND", "0")
    if checkout:
        env["PYTHONPATH"] = checkout
    cmd = [*prefix, sys.executable, "-m", "fhir_bridge", "serve", "--port", str(port)]
    cmd += ["--workers", str(workers)]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(cmd, env=env, cwd=checkout, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + start_seconds
        while not _started(log, workers):
            if time.monotonic() > deadline or process.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"server did not start; its log ends:\n{tail}")
            time.sleep(0.1)
        httpx.get(f"{base}/metadata", timeout=60).raise_for_status()
        yield Server(base, process.pid)
    finally:
        process.terminate()
        process.wait()
        log.close()


def _started(log: IO[bytes], workers: int) -> bool:
    """Whether uvicorn has logged the start of `workers` worker processes."""
    log.seek(0)
    return log.read().count(b"Application startup complete") >= workers


@contextmanager
def fresh_database(url: str | None, folder: str) -> Iterator[str]:
    """A new, empty database for one run: an SQLite file in `folder` without `url`, else a
    new schema in the PostgreSQL database `url`, dropped afterwards."""
    if not url:
        yield f"sqlite:///{folder}/bench-{uuid.uuid4().hex[:8]}.db"
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        yield f"{url}?schema={schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU time all processes of the machine have used since boot, and the time the
    hypervisor took from this virtual machine's cores (Linux /proc/stat: used, steal): the
    difference over a run is what the server processes and the client cost together, and
    how much of the machine was not there."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick
