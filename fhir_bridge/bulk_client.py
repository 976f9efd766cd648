"""A Bulk Data client for the command line: kick off an export, poll it, download its files.

https://hl7.org/fhir/uv/bulkdata/STU2/export.html — the same protocol any Bulk Data server
speaks, so `fhir-bridge export` works against other servers too (without authorization).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from fhir_bridge.client import FHIRClient
from fhir_bridge.domain.fhir import FHIR_JSON
from fhir_bridge.errors import FHIRBridgeError

MAX_WAIT = 10.0  # longest pause between polls, whatever Retry-After says


@dataclass
class Downloaded:
    manifest: dict[str, Any]
    files: list[tuple[str, str, int, Path]] = field(default_factory=list)  # type, url, count, path


class BulkExportClient:
    def __init__(
        self, base_url: str, timeout: float = 120.0, auth: httpx.Auth | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, auth=auth)

    def __enter__(self) -> BulkExportClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def kickoff(self, path: str, params: list[tuple[str, str | int | float | bool | None]]) -> str:
        """Start an export at `[base]/{path}`; the status URL."""
        response = self._http.get(
            f"{self.base_url}/{path}",
            params=params,
            headers={"Accept": FHIR_JSON, "Prefer": "respond-async"},
        )
        if response.status_code != 202:
            FHIRClient._answer(response)  # raises with the server's OperationOutcome
            raise FHIRBridgeError(f"Kick-off answered HTTP {response.status_code}, not 202")
        location = str(response.headers.get("content-location", ""))
        if not location:
            raise FHIRBridgeError("Kick-off answered without Content-Location")
        return location

    def wait(
        self, status_url: str, deadline: float, progress: Callable[[str], None]
    ) -> dict[str, Any]:
        """Poll until the manifest is ready (or the deadline passes); the manifest."""
        while True:
            response = self._http.get(status_url, headers={"Accept": FHIR_JSON})
            if response.status_code == 200:
                manifest: dict[str, Any] = response.json()
                return manifest
            if response.status_code != 202:
                FHIRClient._answer(response)
                raise FHIRBridgeError(f"Status answered HTTP {response.status_code}")
            progress(response.headers.get("x-progress", "in progress"))
            if time.monotonic() > deadline:
                raise FHIRBridgeError(f"The export did not finish in time; status: {status_url}")
            time.sleep(_pause(response.headers.get("retry-after")))

    def export(
        self,
        path: str,
        params: list[tuple[str, str | int | float | bool | None]],
        out: Path,
        timeout: float,
        progress: Callable[[str], None],
        on_file: Callable[[int, int, str], None] | None = None,
    ) -> Downloaded:
        """Kick off at `[base]/{path}`, wait at most `timeout` seconds, download into `out`."""
        status_url = self.kickoff(path, params)
        manifest = self.wait(status_url, time.monotonic() + timeout, progress)
        return self.download(manifest, out, on_file)

    def download(
        self,
        manifest: dict[str, Any],
        out: Path,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> Downloaded:
        """Every output and error file into `out`, streamed; the manifest is saved beside.
        `progress(done, total, type)` is called before each file and once at the end."""
        out.mkdir(parents=True, exist_ok=True)
        result = Downloaded(manifest)
        entries = [(e, "") for e in manifest.get("output", [])]
        entries += [(e, "error-") for e in manifest.get("error", [])]
        for n, (entry, prefix) in enumerate(entries):
            if progress is not None:
                progress(n, len(entries), str(entry.get("type", "")))
            url = str(entry["url"])
            path = out / (prefix + url.rsplit("/", 1)[-1])
            with self._http.stream("GET", url, headers={"Accept": "application/fhir+ndjson"}) as r:
                if r.status_code != 200:
                    raise FHIRBridgeError(f"Downloading {url} answered HTTP {r.status_code}")
                with path.open("wb") as file:
                    for chunk in r.iter_bytes():
                        file.write(chunk)
            count = entry.get("count")
            if count is None:
                count = sum(1 for line in path.open("rb") if line.strip())
            result.files.append((str(entry.get("type", "")), url, int(count), path))
        (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        if progress is not None:
            progress(len(entries), len(entries), "manifest.json")
        return result


def _pause(retry_after: str | None) -> float:
    try:
        return min(max(float(retry_after or 1), 0.2), MAX_WAIT)
    except ValueError:  # an HTTP date: wait the longest
        return MAX_WAIT
