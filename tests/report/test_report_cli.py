"""`fhir-bridge report` against a running demo server: research-view export, tables, report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from fhir_bridge.mapping import load_mappings
from fhir_bridge.report.files import ndjson_source
from fhir_bridge.services.report import outcomes
from tests.e2e.conftest import running_server
from tests.report.conftest import COHORT


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_bridge", *args], capture_output=True, text=True, timeout=300
    )


def without_keys(value: Any) -> Any:
    """The outcome table without pseudonymous keys, which differ between servers' keys."""
    if isinstance(value, dict):
        return {k: without_keys(v) for k, v in value.items() if k != "participant"}
    if isinstance(value, list):
        return [without_keys(v) for v in value]
    return value


def test_report_cli_writes_the_report_of_the_demo_cohort(
    database_url: str, tmp_path: Path, demo_export: Path
) -> None:
    out = tmp_path / "report"
    with running_server(database_url, demo=True, export_dir=str(tmp_path / "exports")) as url:
        result = cli("report", "--server", url, "--group", COHORT, "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = {path.name for path in out.iterdir()}
    assert {
        "report.html",
        "outcomes.json",
        "datapackage.json",
        "madrs-trajectory.png",
        "sds-trajectory.png",
        "participants.csv",
        "visits.csv",
        "scores_long.csv",
        "items_long.csv",
        "dosing.csv",
        "adverse_events.csv",
        "export",
    } == names
    assert (out / "madrs-trajectory.png").stat().st_size > 20_000
    assert "MADRS       V13 post-treatment  11" in result.stdout
    assert "withdrawn: MDD-12" in result.stdout
    got = orjson.loads((out / "outcomes.json").read_bytes())
    # the same numbers as from another server's export of the same trial (another key)
    expected = outcomes(ndjson_source(demo_export), load_mappings(), 10).outcomes
    assert without_keys(got) == without_keys(orjson.loads(orjson.dumps(expected)))
    text = b"".join(path.read_bytes() for path in out.rglob("*") if path.is_file())
    for secret in (b"SYNTHETIC Participant", b"SYN-1000", b"Participant12", b"1963-12-15"):
        assert secret not in text


def test_report_cli_of_an_unknown_group_exits_1(database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, export_dir=str(tmp_path / "exports")) as url:
        result = cli("report", "--server", url, "--group", "nope", "--out", str(tmp_path / "r"))
    assert result.returncode == 1
    assert result.stderr.strip() == "error Group/nope is not known"
