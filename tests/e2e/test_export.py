"""Bulk Data export against real servers: restarts, several workers, the CLI client."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from fhir_bridge.store.exports import claim_job, insert_job, read_job
from fhir_bridge.store.indexing import extract_index
from fhir_bridge.store.sql import SQLStore
from tests.e2e.conftest import running_server

FHIR = {"Content-Type": "application/fhir+json"}
ASYNC = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def load(url: str, patients: int) -> None:
    entries = []
    for n in range(patients):
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-0000-0000-{n:012d}",
                "resource": {"resourceType": "Patient", "gender": "other"},
                "request": {"method": "POST", "url": "Patient"},
            }
        )
        entries.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": f"urn:uuid:00000000-0000-0000-0000-{n:012d}"},
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    assert httpx.post(url, json=body, headers=FHIR, timeout=60).status_code == 200


def cli_export(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fhir_bridge", "export", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def finished(status_url: str, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(status_url)
        if response.status_code != 202:
            return response
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.2)


def counts(manifest: dict[str, Any]) -> dict[str, int]:
    return {entry["type"]: entry["count"] for entry in manifest["output"]}


def crashed_job(database_url: str, exports: Path, attempts: int) -> str:
    """The database and folder a worker leaves when its process dies mid-job: the job in
    progress with an old heartbeat, a partial file."""
    store = SQLStore(database_url, extract_index)
    try:
        with store.session(write=True) as session:
            params = {"level": "system", "base": "http://x/fhir", "types": ["Patient"]}
            instant = "2999-01-01T00:00:00Z"  # the job sees every resource written before
            insert_job(
                session, "crashed", "http://x/fhir/$export", orjson.dumps(params), instant, 1.0
            )
            for _ in range(attempts):
                claim_job(session, "dead-worker", now=2.0, stale_before=3.0)
    finally:
        store.close()
    (exports / "crashed").mkdir(parents=True)
    (exports / "crashed" / "Patient-1.ndjson").write_bytes(b'{"resourceType":"Pat')
    return "crashed"


def test_a_job_whose_server_died_mid_export_is_finished_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    with running_server(database_url, export_dir=str(exports)) as url:
        load(url, 3)
    job_id = crashed_job(database_url, exports, attempts=1)
    with running_server(database_url, export_dir=str(exports), export_stale_seconds="1") as url:
        response = finished(f"{url}/$export-status/{job_id}")
        assert response.status_code == 200, response.text
        assert counts(response.json()) == {"Patient": 3}
        lines = (exports / job_id / "Patient-1.ndjson").read_bytes().splitlines()
        assert [orjson.loads(line)["resourceType"] for line in lines] == ["Patient"] * 3
    store = SQLStore(database_url, extract_index)
    with store.session() as session:
        job = read_job(session, job_id)
    store.close()
    assert job is not None and (job.status, job.attempts) == ("completed", 2)


def test_a_job_that_keeps_dying_ends_failed_with_the_reason(
    database_url: str, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    job_id = crashed_job(database_url, exports, attempts=3)
    with running_server(database_url, export_dir=str(exports), export_stale_seconds="1") as url:
        response = finished(f"{url}/$export-status/{job_id}")
    assert response.status_code == 500
    assert response.json()["issue"][0]["diagnostics"] == (
        "The export failed: the export stopped unfinished 3 times"
    )
    assert not (exports / job_id).exists()


def test_a_queued_job_survives_a_killed_server(database_url: str, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    with running_server(database_url, export_dir=str(exports)) as url:
        load(url, 2)
        kicked = httpx.get(f"{url}/$export", params={"_type": "Patient"}, headers=ASYNC)
        assert kicked.status_code == 202
        job_path = kicked.headers["content-location"].split("/fhir/", 1)[1]
        url.process.kill()
    with running_server(database_url, export_dir=str(exports), export_stale_seconds="1") as url:
        response = finished(f"{url}/{job_path}")
        assert response.status_code == 200
        assert counts(response.json()) == {"Patient": 2}


def test_several_worker_processes_run_each_job_once(database_url: str, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    with running_server(database_url, workers=2, export_dir=str(exports)) as url:
        load(url, 5)
        locations = []
        for _ in range(4):
            kicked = httpx.get(
                f"{url}/$export", params={"_type": "Patient,Observation"}, headers=ASYNC
            )
            assert kicked.status_code == 202
            locations.append(kicked.headers["content-location"])
        manifests = [finished(location).json() for location in locations]
    assert [counts(m) for m in manifests] == [{"Patient": 5, "Observation": 5}] * 4
    store = SQLStore(database_url, extract_index)
    with store.session() as session:
        jobs = [read_job(session, location.rsplit("/", 1)[1]) for location in locations]
    store.close()
    assert [job.attempts for job in jobs if job is not None] == [1, 1, 1, 1]


def test_cli_export_downloads_every_file_and_reports_counts(
    database_url: str, tmp_path: Path
) -> None:
    with running_server(database_url, export_dir=str(tmp_path / "exports")) as url:
        load(url, 4)
        out = tmp_path / "download"
        result = cli_export(
            "--server", url, "--type", "Patient", "--type", "Observation", "--out", str(out)
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"8 resources in 2 files, manifest in {out / 'manifest.json'}"
    )
    assert len((out / "Observation-1.ndjson").read_bytes().splitlines()) == 4
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert counts(manifest) == {"Patient": 4, "Observation": 4}


def test_cli_export_of_a_refused_request_exits_1(database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, export_dir=str(tmp_path / "exports")) as url:
        result = cli_export("--server", url, "--type", "Spaceship", "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "_type 'Spaceship' is not a resource type this server holds" in result.stderr


def test_demo_trial_research_export_through_the_cli_holds_no_identities(
    database_url: str, tmp_path: Path
) -> None:
    with running_server(database_url, demo=True, export_dir=str(tmp_path / "exports")) as url:
        group = httpx.get(
            f"{url}/Group", params={"identifier": "https://fhir-bridge.org/fhir/sid/cohort|"}
        )
        ids = [e["resource"]["id"] for e in group.json()["entry"]]
        assert ids == ["cohort-psykforsk-mat-mdd"]
        out = tmp_path / "trial"
        result = cli_export(
            "--server", url, "--group", ids[0], "--view", "research", "--out", str(out)
        )
    assert result.returncode == 0, result.stderr
    text = b"".join(path.read_bytes() for path in out.glob("*.ndjson"))
    for secret in (b"SYNTHETIC Participant", b"SYN-1000", b"Participant12", b"1963-12-15"):
        assert secret not in text
    lines = [orjson.loads(line) for line in text.splitlines()]
    patients = [r for r in lines if r["resourceType"] == "Patient"]
    assert len(patients) == 12  # the withdrawn participant contributes until withdrawal
    subjects = {
        r["identifier"][0]["value"] for r in lines if r["resourceType"] == "ResearchSubject"
    }
    assert subjects == {f"MDD-{n:02d}" for n in range(1, 13)}
    assert "excluded by the research policy" in result.stdout
