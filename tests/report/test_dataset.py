"""The analysis dataset of the demo trial: the wide outcome table against scores_long, the
codebook against the tables' columns, the Data Package (frictionless) and Parquet (pandas)."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import frictionless
import orjson
import pandas as pd
import pytest

from fhir_bridge.mapping import load_mappings
from fhir_bridge.report.files import ndjson_source
from fhir_bridge.report.tables import TABLES
from fhir_bridge.services.dataset import write_dataset

DATASET = [*TABLES, "outcomes_wide", "codebook"]


@pytest.fixture(scope="module")
def csv_dir(demo_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset-csv")
    write_dataset(ndjson_source(demo_export), out, load_mappings())
    return out


@pytest.fixture(scope="module")
def parquet_dir(demo_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dataset-parquet")
    write_dataset(ndjson_source(demo_export), out, load_mappings(), "parquet")
    return out


def table(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", keep_default_na=False, na_values=[""])


def cell(value: Any) -> Any:
    """A value as both readers can give it: no value as None, numbers as float, dates as
    ISO text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def test_the_dataset_holds_every_table_and_its_descriptor(csv_dir: Path) -> None:
    package = orjson.loads((csv_dir / "datapackage.json").read_bytes())
    assert package["name"] == "trial-dataset"
    assert [r["path"] for r in package["resources"]] == [f"{name}.csv" for name in DATASET]
    assert {p.name for p in csv_dir.iterdir()} == {
        *(f"{name}.csv" for name in DATASET),
        "datapackage.json",
    }


def test_the_wide_table_holds_the_first_total_of_each_instrument_and_visit(
    csv_dir: Path,
) -> None:
    wide = table(csv_dir, "outcomes_wide")
    scores = table(csv_dir, "scores_long")
    labels = {v.code: v.visit.lower() for v in load_mappings().protocol.visits}
    first = scores.drop_duplicates(["participant", "instrument", "visit"])  # study-day order
    expected = {
        (row.participant, f"{row.instrument}_{labels[row.visit]}"): float(row.total)
        for row in first.itertuples()
    }
    totals = [c for c in wide.columns if c not in PARTICIPANT]
    got = {
        (participant, column): float(value)
        for participant, column, value in wide.melt("participant", totals).itertuples(index=False)
        if not pd.isna(value)
    }
    assert got == expected
    assert totals[:3] == ["madrs_v3", "madrs_v13", "madrs_fu"]
    assert {"sds_v3", "sds_v13", "sds_fu", "cssrs_v5", "cssrs_v9"} <= set(totals)
    assert wide["madrs_v3"].dtype == "int64"  # everyone has a baseline MADRS


PARTICIPANT = ["participant", "study_subject_id", "status", "withdrawal_day"]


def test_the_wide_table_gives_each_participants_status_and_withdrawal_day(
    csv_dir: Path,
) -> None:
    wide = table(csv_dir, "outcomes_wide")
    participants = table(csv_dir, "participants")
    pd.testing.assert_frame_equal(wide[PARTICIPANT], participants[PARTICIPANT])
    withdrawn = wide[wide.status == "withdrawn"]
    assert withdrawn[["study_subject_id", "withdrawal_day"]].values.tolist() == [["MDD-12", 5]]
    assert withdrawn[["madrs_v13", "madrs_fu"]].isna().all(axis=None)


def test_every_codebook_variable_is_a_column_and_every_column_is_in_the_codebook(
    csv_dir: Path,
) -> None:
    codebook = table(csv_dir, "codebook")
    documented = list(codebook[["table", "variable"]].itertuples(index=False, name=None))
    columns = [(name, column) for name in DATASET[:-1] for column in table(csv_dir, name).columns]
    assert documented == columns
    assert codebook["label"].notna().all() and codebook["description"].notna().all()
    assert codebook["source"].notna().all() and codebook["fhir_path"].notna().all()
    package = orjson.loads((csv_dir / "datapackage.json").read_bytes())
    fields = {
        (r["path"].removesuffix(".csv"), f["name"]): f
        for r in package["resources"]
        for f in r["schema"]["fields"]
    }
    for row in codebook.itertuples():
        described = fields[(row.table, row.variable)]
        assert described["title"] == row.label and described["type"] == row.type
        assert described["description"].startswith(row.description)
        assert f"FHIR path: {row.fhir_path}" in described["description"]


def test_the_codebook_gives_values_units_sources_and_fhir_paths(csv_dir: Path) -> None:
    codebook = table(csv_dir, "codebook").set_index(["table", "variable"])
    madrs = codebook.loc[("outcomes_wide", "madrs_v13")]
    assert madrs["label"] == "MADRS total, V13" and madrs["type"] == "integer"
    assert madrs["values"] == "0..60" and madrs["unit"] == "{score}"
    assert madrs["fhir_path"] == "Observation.value.ofType(Quantity).value"
    assert (
        "scores_long.total where instrument = madrs and visit = post-treatment" in (madrs["source"])
    )
    severity = codebook.loc[("scores_long", "severity")]
    assert "madrs-severe = Severe depression (MADRS total 35-60)" in severity["values"]
    assert severity["source"] == "view scores_long (mappings/views/scores_long.json)"
    status = codebook.loc[("outcomes_wide", "status")]
    assert "withdrawn = Withdrawn" in status["values"] and "off-study = " in status["values"]
    visit = codebook.loc[("visits", "visit")]["values"]
    assert "baseline = Baseline" in visit and "follow-up-7m = " in visit
    day = codebook.loc[("scores_long", "study_day")]
    assert day["unit"] == "d" and "fhir_bridge/report/tables.py" in day["source"]
    assert day["fhir_path"].startswith("Observation.effective.ofType(dateTime), ")


def test_frictionless_validates_the_csv_package(csv_dir: Path) -> None:
    report = frictionless.validate(csv_dir / "datapackage.json")
    assert report.valid, report.flatten(["resourcePath", "fieldName", "type", "note"])
    package = orjson.loads((csv_dir / "datapackage.json").read_bytes())
    fields = {f["name"]: f for f in package["resources"][0]["schema"]["fields"]}
    assert "withdrawn" in fields["status"]["constraints"]["enum"]  # a required R4 binding
    assert {"value": "female", "label": "Female"} in fields["sex"]["categories"]


def test_frictionless_reads_the_parquet_package_but_for_empty_integers(
    parquet_dir: Path,
) -> None:
    """frictionless reads Parquet through pandas, where an integer column with an empty cell
    becomes float NaN, which it then refuses as an integer; every other check passes."""
    package = orjson.loads((parquet_dir / "datapackage.json").read_bytes())
    assert {r["format"] for r in package["resources"]} == {"parquet"}
    assert [r["path"] for r in package["resources"]] == [f"{name}.parquet" for name in DATASET]
    report = frictionless.validate(parquet_dir / "datapackage.json")
    integers = {
        (r["name"], f["name"])
        for r in package["resources"]
        for f in r["schema"]["fields"]
        if f["type"] == "integer"
    }
    for task in report.tasks:
        for error in task.errors:
            assert error.type == "type-error", error.message
            assert (task.name, error.field_name) in integers and error.cell == "nan"


def test_pandas_reads_the_parquet_files_with_the_csv_values(
    csv_dir: Path, parquet_dir: Path
) -> None:
    for name in DATASET:
        csv = table(csv_dir, name)
        parquet = pd.read_parquet(parquet_dir / f"{name}.parquet")
        assert list(parquet.columns) == list(csv.columns), name
        assert len(parquet) == len(csv), name
        for column in csv.columns:
            got = [cell(v) for v in parquet[column].tolist()]
            assert got == [cell(v) for v in csv[column].tolist()], (name, column)
    visits = pd.read_parquet(parquet_dir / "visits.parquet")
    assert visits["study_day"].dtype == "int64" and visits["in_window"].dtype == "bool"
    assert isinstance(visits["date"].iloc[0], date)  # date32


def test_csv_tables_neutralise_formula_cells_but_not_numbers(tmp_path: Path) -> None:
    from fhir_bridge.report.columns import Column
    from fhir_bridge.report.files import write_tables
    from fhir_bridge.report.tables import Tables

    columns = (Column("participant", "string", "id"), Column("change", "integer", "change"))
    tables = Tables({}, {}, {})
    tables.add("t", [{"participant": "=cmd|' /C calc'!A0", "change": -3}], columns, "a table")
    write_tables(tables, tmp_path)
    lines = (tmp_path / "t.csv").read_text(encoding="utf-8").splitlines()
    assert lines[1] == "'=cmd|' /C calc'!A0,-3"
