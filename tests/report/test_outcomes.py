"""Every number of the outcome table recomputed independently from the exported CSVs with
pandas and SciPy, and the report's files (Data Package, figures, HTML)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import frictionless
import orjson
import pandas as pd
import pytest
from scipy import stats

from fhir_bridge.mapping import load_mappings
from fhir_bridge.report.files import ndjson_source
from fhir_bridge.report.tables import TABLES
from fhir_bridge.services.report import Report, write_report
from fhir_bridge.services.report import outcomes as compute

VISITS = ["baseline", "post-treatment", "follow-up-7m"]
INSTRUMENTS = ["madrs", "sds", "phq9", "gad7", "isi", "pcl5", "cssrs"]


@pytest.fixture(scope="module")
def report_dir(demo_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(ndjson_source(demo_export), out, load_mappings(), remission_threshold=10)
    return out


@pytest.fixture(scope="module")
def outcomes(report_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((report_dir / "outcomes.json").read_bytes())
    return data


@pytest.fixture(scope="module")
def scores(report_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(report_dir / "scores_long.csv")
    # one total per participant, instrument and visit (the first in study-day order)
    return frame.drop_duplicates(["participant", "instrument", "visit"])


def close(got: Any, expected: Any) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return got is None
    return got == pytest.approx(float(expected), rel=1e-9, abs=1e-9)


def populations(scores: pd.DataFrame, report_dir: Path) -> dict[str, list[str]]:
    participants = pd.read_csv(report_dir / "participants.csv")["participant"].tolist()
    madrs = scores[scores.instrument == "madrs"]
    seen = madrs.groupby("participant")["visit"].apply(set)
    completers = [p for p in participants if set(VISITS) <= seen.get(p, set())]
    return {"all-available": participants, "completers": completers}


def wide(scores: pd.DataFrame, instrument: str, members: list[str]) -> pd.DataFrame:
    chosen = scores[(scores.instrument == instrument) & scores.participant.isin(members)]
    return chosen.pivot(index="participant", columns="visit", values="total")


def test_descriptive_statistics_match_pandas(
    outcomes: dict[str, Any], scores: pd.DataFrame, report_dir: Path
) -> None:
    expected = 0
    for population, members in populations(scores, report_dir).items():
        for instrument in INSTRUMENTS:
            table = wide(scores, instrument, members)
            for visit in VISITS:
                values = table[visit].dropna()
                (row,) = [
                    r
                    for r in outcomes["scores"]
                    if (r["population"], r["instrument"], r["visit"])
                    == (population, instrument, visit)
                ]
                assert row["n"] == len(values)
                assert close(row["mean"], values.mean())
                assert close(row["sd"], values.std(ddof=1))
                assert close(row["median"], values.median())
                assert close(row["q1"], values.quantile(0.25))
                assert close(row["q3"], values.quantile(0.75))
                expected += 1
    assert len(outcomes["scores"]) == expected == 2 * 7 * 3


def test_changes_match_a_paired_t_interval_from_scipy(
    outcomes: dict[str, Any], scores: pd.DataFrame, report_dir: Path
) -> None:
    expected = 0
    for population, members in populations(scores, report_dir).items():
        for instrument in INSTRUMENTS:
            table = wide(scores, instrument, members)
            for visit in VISITS[1:]:
                change = (table[visit] - table["baseline"]).dropna()
                n, mean, sd = len(change), change.mean(), change.std(ddof=1)
                low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
                (row,) = [
                    r
                    for r in outcomes["changes"]
                    if (r["population"], r["instrument"], r["visit"])
                    == (population, instrument, visit)
                ]
                assert row["n"] == n
                assert close(row["mean"], mean) and close(row["sd"], sd)
                assert close(row["ci_low"], low) and close(row["ci_high"], high)
                assert close(row["d_z"], mean / sd if sd > 0 else None)
                expected += 1
    assert len(outcomes["changes"]) == expected == 2 * 7 * 2
    madrs = [c for c in outcomes["changes"] if c["instrument"] == "madrs"]
    assert all(c["ci_high"] < 0 for c in madrs)  # the demo trial improves


def test_response_and_remission_match_their_definitions(
    outcomes: dict[str, Any], scores: pd.DataFrame, report_dir: Path
) -> None:
    for population, members in populations(scores, report_dir).items():
        table = wide(scores, "madrs", members)
        for visit in VISITS[1:]:
            pairs = table[["baseline", visit]].dropna()
            responders = int(((pairs["baseline"] - pairs[visit]) >= 0.5 * pairs["baseline"]).sum())
            remitters = int((pairs[visit] < 10).sum())
            for name, count in (("response", responders), ("remission", remitters)):
                (row,) = [
                    r
                    for r in outcomes[name]
                    if (r["population"], r["visit"]) == (population, visit)
                ]
                assert (row["instrument"], row["n"], row["count"]) == ("madrs", len(pairs), count)
                assert close(row["rate"], count / len(pairs))
    assert len(outcomes["response"]) == len(outcomes["remission"]) == 4
    assert ">= 50 % from baseline" in outcomes["definitions"]["response"]
    assert "MADRS total < 10" in outcomes["definitions"]["remission"]
    assert "remission_threshold_madrs" in outcomes["definitions"]["remission"]


def test_safety_withdrawal_exposure_and_windows_match_the_csvs(
    outcomes: dict[str, Any], report_dir: Path
) -> None:
    every = pd.read_csv(report_dir / "scores_long.csv")
    ideation = every[every.instrument == "cssrs"]
    first = ideation[ideation.visit == "baseline"].set_index("participant")["total"]
    later = ideation[ideation.visit != "baseline"]
    rises = later[later.total > later.participant.map(first)]
    si = outcomes["suicidal_ideation"]
    assert si["rose_above_baseline"] is (len(rises) > 0)
    assert len(si["rises"]) == len(rises) == 0
    assert si["participants_assessed"] == later.participant.nunique() == 12

    participants = pd.read_csv(report_dir / "participants.csv")
    visits = pd.read_csv(report_dir / "visits.csv")
    withdrawn = participants[participants.status == "withdrawn"]
    assert [w["study_subject_id"] for w in outcomes["withdrawals"]] == ["MDD-12"]
    (w,) = outcomes["withdrawals"]
    theirs = visits[visits.participant == withdrawn.participant.iloc[0]]
    assert w["after_visit"] == theirs.loc[theirs.study_day.idxmax(), "visit"] == "dosing-1"
    assert w["after_visit_label"] == "V5"
    assert w["withdrawal_day"] == withdrawn.withdrawal_day.iloc[0]
    assert outcomes["enrolled"] == len(participants) == 12

    dosing = pd.read_csv(report_dir / "dosing.csv")
    for session in outcomes["exposure"]:
        rows = dosing[dosing.session == session["session"]]
        assert session["participants"] == rows.participant.nunique()
        for role in ("initial", "supplemental"):
            counts = rows[rows.role == role].groupby("dose").size()
            assert session[role] == {f"{dose:g} mg": int(n) for dose, n in counts.items()}
    assert [s["session"] for s in outcomes["exposure"]] == ["dosing-1", "dosing-2"]

    events = pd.read_csv(report_dir / "adverse_events.csv")
    assert outcomes["adverse_events"] == {
        "events": len(events),
        "participants": events.participant.nunique(),
        "serious": int((events.seriousness != "Non-serious").sum()),
        "by_severity": events.groupby("severity").size().to_dict(),
    }
    assert outcomes["visit_windows"] == {
        "visits": int(visits.in_window.notna().sum()),
        "outside": int((visits.in_window == False).sum()),  # noqa: E712 - pandas mask
    }


def test_populations_are_stated(outcomes: dict[str, Any]) -> None:
    assert [(p["population"], p["participants"]) for p in outcomes["populations"]] == [
        ("all-available", 12),
        ("completers", 11),
    ]
    assert "d_z = mean change / SD of change" in outcomes["definitions"]["effect_size"]


def test_a_remission_threshold_setting_changes_the_count(demo_export: Path) -> None:
    source = ndjson_source(demo_export)
    m = load_mappings()
    default: Report = compute(source, m)
    wider: Report = compute(source, m, remission_threshold=16)
    count = {r["visit"]: r["count"] for r in default.outcomes["remission"]}
    more = {r["visit"]: r["count"] for r in wider.outcomes["remission"]}
    assert all(more[visit] > count[visit] for visit in count)
    assert "MADRS total < 16" in wider.outcomes["definitions"]["remission"]
    assert "mappings/instruments" in default.outcomes["definitions"]["remission"]


def test_tables_form_a_valid_data_package_with_the_codebook(report_dir: Path) -> None:
    report = frictionless.validate(report_dir / "datapackage.json")
    assert report.valid, report.flatten(["type", "note"])
    package = orjson.loads((report_dir / "datapackage.json").read_bytes())
    assert [r["path"] for r in package["resources"]] == [f"{name}.csv" for name in TABLES]
    for resource in package["resources"]:
        assert all(field["description"] for field in resource["schema"]["fields"])


def test_figures_are_written_and_inlined_in_a_self_contained_page(report_dir: Path) -> None:
    for instrument in ("madrs", "sds"):
        png = (report_dir / f"{instrument}-trajectory.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', html)) == 2
    assert "<script" not in html and not re.search(r'(src|href)="https?:', html)
    assert "−16.4 (−22.2 to −10.5)" in html  # MADRS change to post-treatment, 95 % CI
    for name in TABLES:
        header = (report_dir / f"{name}.csv").read_text(encoding="utf-8").splitlines()[0]
        for column in header.split(","):
            assert f"<td>{column}</td>" in html  # every column is in the codebook
    for secret in ("SYNTHETIC Participant", "SYN-1000", "Participant12", "1963-12-15"):
        assert secret not in html


def test_a_rise_in_suicidal_ideation_above_baseline_is_reported(demo_export: Path) -> None:
    """One participant's last C-SSRS (the 7-month follow-up) raised to 2 above a baseline 0."""
    source = ndjson_source(demo_export)
    ideation = [
        o
        for o in source("Observation")
        if o["code"]["coding"][0]["code"] == "cssrs-ideation-severity"
    ]
    theirs = sorted(
        (o for o in ideation if o["subject"] == ideation[0]["subject"]),
        key=lambda o: o["effectiveDateTime"],
    )
    assert theirs[0]["valueQuantity"]["value"] == 0 and len(theirs) == 5
    raised = theirs[-1]["id"]

    def with_rise(resource_type: str) -> Iterator[dict[str, Any]]:
        for resource in source(resource_type):
            if resource["id"] == raised:
                resource["valueQuantity"]["value"] = 2
            yield resource

    report = compute(with_rise, load_mappings())
    si = report.outcomes["suicidal_ideation"]
    assert si["rose_above_baseline"] is True
    assert [(r["visit"], r["baseline"], r["value"]) for r in si["rises"]] == [
        ("follow-up-7m", 0.0, 2.0)
    ]
