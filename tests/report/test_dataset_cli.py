"""`fhir-bridge export-dataset` against a running demo server: research-view export, every
trial view, the wide outcomes and the codebook as a Data Package, in CSV and in Parquet."""

from __future__ import annotations

from pathlib import Path

import frictionless
import pandas as pd

from fhir_bridge.mapping import load_mappings
from fhir_bridge.report.files import ndjson_source
from fhir_bridge.services.dataset import write_dataset
from tests.e2e.conftest import running_server
from tests.report.conftest import COHORT
from tests.report.test_report_cli import cli

STUDY = COHORT.removeprefix("cohort-")
TABLES = [
    "participants",
    "visits",
    "scores_long",
    "items_long",
    "dosing",
    "adverse_events",
    "outcomes_wide",
    "codebook",
]


def test_export_dataset_writes_the_demo_cohorts_dataset_in_csv_and_parquet(
    database_url: str, tmp_path: Path, demo_export: Path
) -> None:
    csv, parquet = tmp_path / "csv", tmp_path / "parquet"
    with running_server(database_url, demo=True, export_dir=str(tmp_path / "exports")) as url:
        by_study = cli("export-dataset", "--server", url, "--study", STUDY, "--out", str(csv))
        by_group = cli(
            "export-dataset",
            *("--server", url, "--group", COHORT, "--format", "parquet", "--out", str(parquet)),
        )
    for result in (by_study, by_group):
        assert result.returncode == 0, result.stderr
        assert "downloading  [########################] 7/7" in result.stderr
        assert "writing      [########################] 8/8" in result.stderr
    assert f"{COHORT}: 8 tables and datapackage.json in {csv}" in by_study.stderr
    assert by_study.stdout.split() == [
        *(str(csv / f"{name}.csv") for name in TABLES),
        str(csv / "datapackage.json"),
    ]
    assert {p.name for p in parquet.iterdir()} == {
        *(f"{name}.parquet" for name in TABLES),
        "datapackage.json",
        "export",
    }
    report = frictionless.validate(csv / "datapackage.json")
    assert report.valid, report.flatten(["resourcePath", "fieldName", "type", "note"])
    # the same tables as from another server's export of the same trial (another key)
    expected = tmp_path / "expected"
    write_dataset(ndjson_source(demo_export), expected, load_mappings())
    wide = pd.read_csv(csv / "outcomes_wide.csv").drop(columns="participant")
    pd.testing.assert_frame_equal(
        wide, pd.read_csv(expected / "outcomes_wide.csv").drop(columns="participant")
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(csv / "codebook.csv"), pd.read_csv(expected / "codebook.csv")
    )
    pd.testing.assert_frame_equal(
        wide,
        pd.read_parquet(parquet / "outcomes_wide.parquet").drop(columns="participant"),
        check_dtype=False,
    )
    written = [path for folder in (csv, parquet) for path in folder.rglob("*")]
    text = b"".join(path.read_bytes() for path in written if path.is_file())
    for secret in (b"SYNTHETIC Participant", b"SYN-1000", b"Participant12", b"1963-12-15"):
        assert secret not in text


def test_export_dataset_of_an_unknown_study_exits_1(database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, export_dir=str(tmp_path / "exports")) as url:
        result = cli(
            "export-dataset", "--server", url, "--study", "nope", "--out", str(tmp_path / "d")
        )
    assert result.returncode == 1
    assert result.stderr.strip() == "error Group/cohort-nope is not known"
