"""The demo trial loaded through the app and exported in the research view, once per session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings

COHORT = "cohort-psykforsk-mat-mdd"
ASYNC = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def research_export(client: TestClient, out: Path) -> Path:
    """The cohort's research-view Group export downloaded into `out` as the Bulk Data client
    writes it: each file named as its URL ends, manifest.json beside."""
    kickoff = client.get(
        f"/fhir/Group/{COHORT}/$export", params={"view": "research"}, headers=ASYNC
    )
    assert kickoff.status_code == 202, kickoff.text
    deadline = time.monotonic() + 60
    while (status := client.get(kickoff.headers["content-location"])).status_code == 202:
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.1)
    assert status.status_code == 200, status.text
    manifest = status.json()
    out.mkdir(parents=True)
    for entry in manifest["output"]:
        path = out / entry["url"].rsplit("/")[-1]
        path.write_bytes(client.get(entry["url"]).content)
    (out / "manifest.json").write_bytes(orjson.dumps(manifest))
    return out


@pytest.fixture(scope="session")
def demo_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with the demo trial loaded, for the whole session."""
    root = tmp_path_factory.mktemp("demo")
    settings = Settings(
        database_url=f"sqlite:///{root / 'fhir.db'}",
        demo=True,
        export_dir=str(root / "exports"),
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client


@pytest.fixture(scope="session")
def demo_export(demo_client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the research-view export of the demo trial's cohort Group."""
    return research_export(demo_client, tmp_path_factory.mktemp("research") / "export")
