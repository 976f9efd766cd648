"""The trial's ViewDefinitions (mappings/views) and the tables built on them, on the demo trial."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_bridge.mapping import Mappings, load_mappings
from fhir_bridge.report.columns import VIEWS, load_views
from fhir_bridge.report.files import ndjson_source
from fhir_bridge.report.tables import TABLES, Tables, trial_tables
from fhir_bridge.report.values import FHIR_CODES
from fhir_bridge.validation.definitions import load_definitions

VISITS = [
    "screening", "enrollment", "preparatory-1", "preparatory-2", "baseline", "preparatory-3",
    "dosing-1", "integration-1.1", "integration-1.2", "integration-1.3", "dosing-2",
    "integration-2.1", "integration-2.2", "integration-2.3", "post-treatment", "study-end",
    "follow-up-7m",
]  # fmt: skip
INSTRUMENTS = ["madrs", "sds", "phq9", "gad7", "isi", "pcl5", "cssrs"]
RESOURCES = {
    "ResearchSubject", "Patient", "Encounter", "Observation", "QuestionnaireResponse",
    "MedicationAdministration", "AdverseEvent",
}  # fmt: skip


@pytest.fixture(scope="module")
def m() -> Mappings:
    return load_mappings()


@pytest.fixture(scope="module")
def tables(demo_export: Path, m: Mappings) -> Tables:
    return trial_tables(ndjson_source(demo_export), m, load_views())


def by(rows: list[dict[str, Any]], *columns: str) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(row[c] for c in columns) for row in rows)


def test_every_view_file_is_a_view_definition_with_a_source_and_described_columns() -> None:
    views = load_views()
    assert sorted(views) == sorted([*TABLES, "patients"])
    for path in VIEWS.glob("*.json"):
        data = orjson.loads(path.read_bytes())
        assert data["resourceType"] == "ViewDefinition" and data["status"] == "active"
        assert "Source:" in data["description"], path.name
        assert data["name"] == path.stem
    for view in views.values():
        assert all(len(column.description) > 20 for column in view.columns), view.name


def test_codebook_describes_every_column_of_every_table(tables: Tables) -> None:
    for name in TABLES:
        assert [c.name for c in tables.codebook[name]] == list(tables.rows[name][0]), name
        assert all(c.description for c in tables.codebook[name])
    derived = {c.name for c in tables.codebook["visits"] if c.derived}
    assert {"study_day", "planned_day", "in_window"} <= derived
    assert "visit" not in derived  # the view's own column


def test_every_column_has_a_label_a_fhir_path_and_a_known_value_set(tables: Tables) -> None:
    for name in TABLES:
        for column in tables.codebook[name]:
            assert column.label and column.source, (name, column.name)
            assert column.path.split(".")[0] in RESOURCES, (name, column.name, column.path)
            assert column.values is None or column.values in tables.values, column.values
            assert ("Python" in column.source) == column.derived
    columns = {(n, c.name): c for n in TABLES for c in tables.codebook[n]}
    assert columns[("scores_long", "total")].path == "Observation.value.ofType(Quantity).value"
    assert columns[("scores_long", "total")].unit == "{score}"
    severity = columns[("scores_long", "severity")]
    assert severity.path == (
        "Observation.interpretation.coding.where(system = "
        "'https://fhir-bridge.org/fhir/CodeSystem/severity').code.first()"
    )  # the view's constant written out
    assert columns[("items_long", "link_id")].path == "QuestionnaireResponse.item.linkId"
    assert columns[("participants", "sex")].source.startswith("view patients")


def test_value_sets_give_the_meaning_of_every_coded_value(tables: Tables, m: Mappings) -> None:
    sets = {name: dict(value_set.values) for name, value_set in tables.values.items()}
    assert sets["visit"]["baseline"].startswith("Baseline")
    assert "nominal study day 0" in sets["visit"]["baseline"]
    assert sets["severity"]["madrs-moderate"] == "Moderate depression (MADRS total 20-34)"
    assert sets["instrument"]["madrs"].startswith("MADRS: Montgomery")
    assert "withdrawn" in sets["research-subject-status"]
    for name, column in [
        ("participants", "status"),
        ("participants", "sex"),
        ("participants", "last_visit"),
        ("visits", "visit"),
        ("visits", "kind"),
        ("visits", "status"),
        ("scores_long", "severity"),
        ("scores_long", "instrument"),
        ("scores_long", "code"),
        ("items_long", "questionnaire"),
        ("dosing", "role"),
        ("dosing", "session"),
        ("adverse_events", "seriousness"),
        ("adverse_events", "severity"),
    ]:
        (spec,) = [c for c in tables.codebook[name] if c.name == column]
        assert spec.values is not None
        used = {row[column] for row in tables.rows[name]} - {None}
        assert used and used <= set(sets[spec.values]), (name, column, used)


def test_fhir_code_meanings_list_the_r4_value_sets_codes() -> None:
    expansions = load_definitions()["valueSets"]
    data = orjson.loads(FHIR_CODES.read_bytes())
    for value_set in data["value_sets"]:
        (codes,) = expansions[value_set["url"]].values()
        assert sorted(c["code"] for c in value_set["concepts"]) == sorted(codes), value_set["id"]
        assert value_set["binding"] in ("required", "example")


def test_participants_are_the_twelve_pseudonymous_subjects(tables: Tables) -> None:
    rows = tables.rows["participants"]
    assert [r["study_subject_id"] for r in rows] == [f"MDD-{n:02d}" for n in range(1, 13)]
    assert all(len(r["participant"]) == 32 for r in rows)  # keyed pseudonyms, not stored ids
    assert by(rows, "status") == {("off-study",): 11, ("withdrawn",): 1}
    assert by(rows, "sex") == {("female",): 7, ("male",): 5}
    assert {r["arm"] for r in rows} == {"MDMA-AT"}  # the single arm of the protocol
    assert all(r["assigned_arm"] is None and r["actual_arm"] is None for r in rows)
    assert all(isinstance(r["birth_year"], int) and 1930 < r["birth_year"] < 2010 for r in rows)
    assert all(r["enrolment_day"] is not None and r["enrolment_day"] < 0 for r in rows)
    done = [r for r in rows if r["status"] == "off-study"]
    assert {r["last_visit"] for r in done} == {"follow-up-7m"}
    assert all(r["withdrawal_date"] is None and r["withdrawal_day"] is None for r in done)


def test_the_withdrawn_participant_left_after_the_first_dosing_session(tables: Tables) -> None:
    (withdrawn,) = [r for r in tables.rows["participants"] if r["status"] == "withdrawn"]
    assert withdrawn["study_subject_id"] == "MDD-12"
    assert withdrawn["withdrawal_date"] == withdrawn["end_date"]
    assert withdrawn["last_visit"] == "dosing-1"
    theirs = [v for v in tables.rows["visits"] if v["participant"] == withdrawn["participant"]]
    assert [v["visit"] for v in theirs] == VISITS[: VISITS.index("dosing-1") + 1]
    assert withdrawn["withdrawal_day"] >= theirs[-1]["study_day"]


def test_visits_follow_the_protocol_schedule_and_windows(tables: Tables) -> None:
    rows = tables.rows["visits"]
    counts = by(rows, "visit")
    assert [counts[(v,)] for v in VISITS] == [12] * 7 + [11] * 10
    assert {r["study_day"] for r in rows if r["visit"] == "baseline"} == {0}
    assert {r["visit_label"] for r in rows if r["visit"] == "post-treatment"} == {"V13"}
    post = [r for r in rows if r["visit"] == "post-treatment"]
    assert {(r["planned_day"], r["target_day"], r["window_days"]) for r in post} == {(91, 91, 21)}
    assert all(r["in_window"] for r in rows)  # the demo keeps every visit in its window
    for r in rows:
        assert r["deviation_days"] == r["study_day"] - r["target_day"]
        assert r["date"] == r["start"][:10]


def test_a_visit_moved_outside_its_window_is_flagged(demo_export: Path, m: Mappings) -> None:
    """V9 is due 28 +/- 7 days after the participant's own V5: moving one V9 12 days later puts
    it outside its window, and the integration visits, due after the actual V9, are now early;
    the post-treatment visit, anchored to baseline, is not affected."""
    source = ndjson_source(demo_export)
    moved: list[str] = []

    def shifted(resource_type: str) -> Iterator[dict[str, Any]]:
        for resource in source(resource_type):
            code = resource.get("type", [{}])[0].get("coding", [{}])[0].get("code")
            if resource_type == "Encounter" and code == "dosing-2" and not moved:
                moved.append(resource["id"])
                start = datetime.fromisoformat(resource["period"]["start"]) + timedelta(days=12)
                resource["period"]["start"] = start.isoformat()
            yield resource

    rows = trial_tables(shifted, m, load_views()).rows["visits"]
    (row,) = [r for r in rows if r["encounter"] == moved[0]]
    assert row["deviation_days"] >= 10 and row["in_window"] is False
    late = [r for r in rows if r["in_window"] is False]
    assert {r["participant"] for r in late} == {row["participant"]}
    assert sorted(r["visit"] for r in late) == [
        "dosing-2", "integration-2.1", "integration-2.2", "integration-2.3",
    ]  # fmt: skip
    assert all(r["deviation_days"] < -3 for r in late if r is not row)


def test_scores_long_holds_every_administered_total_with_its_band(
    tables: Tables, m: Mappings
) -> None:
    rows = tables.rows["scores_long"]
    assert len(rows) == 261
    counts = by(rows, "instrument", "visit")
    outcome_visits = ("baseline", "post-treatment", "follow-up-7m")
    for instrument in INSTRUMENTS:
        assert [counts[(instrument, v)] for v in outcome_visits] == [12, 11, 11]
    assert counts[("cssrs", "dosing-1")] == 12 and counts[("cssrs", "dosing-2")] == 11
    for row in rows:
        spec = m.instrument(row["instrument"])
        assert spec.total.min <= row["total"] <= spec.total.max
        band = spec.severity(int(row["total"]))
        if band is not None:
            assert row["severity"] == band.code
        assert row["study_day"] == next(
            v["study_day"] for v in tables.rows["visits"] if v["encounter"] == row["encounter"]
        )


def test_items_long_scores_add_up_to_the_totals(tables: Tables, m: Mappings) -> None:
    items = tables.rows["items_long"]
    assert len(items) == sum(
        len(m.instrument(r["instrument"]).items) for r in tables.rows["scores_long"]
    )
    assert all(isinstance(r["score"], int) for r in items)
    coded = [r for r in items if r["answer_code"]]
    assert {r["instrument"] for r in coded} == {"phq9", "gad7", "cssrs"}
    sums: Counter[tuple[str, str, str]] = Counter()
    for r in items:
        item = m.instrument(r["instrument"]).item(r["link_id"])
        assert item is not None
        if item.summed:
            sums[(r["participant"], r["encounter"], r["instrument"])] += r["score"]
    for score in tables.rows["scores_long"]:
        if m.instrument(score["instrument"]).total.rule == "sum":
            key = (score["participant"], score["encounter"], score["instrument"])
            assert sums[key] == score["total"]


def test_dosing_holds_an_initial_and_a_supplemental_dose_per_session(tables: Tables) -> None:
    rows = tables.rows["dosing"]
    assert by(rows, "session", "role") == {
        ("dosing-1", "initial"): 12,
        ("dosing-1", "supplemental"): 12,
        ("dosing-2", "initial"): 11,
        ("dosing-2", "supplemental"): 11,
    }
    initial = {r["administration"]: r for r in rows if r["role"] == "initial"}
    for row in rows:
        assert row["dose_unit"] == "mg" and row["status"] == "completed"
        if row["role"] == "supplemental":
            first = initial[row["part_of"]]
            assert (first["participant"], first["session"]) == (row["participant"], row["session"])
            assert row["dose"] * 2 == first["dose"] and row["date"] > first["date"]
    assert {r["dose"] for r in initial.values()} <= {80, 120}


def test_adverse_events_name_their_visit_and_suspect_dose(tables: Tables) -> None:
    (event,) = tables.rows["adverse_events"]
    assert (event["seriousness"], event["severity"], event["actuality"]) == (
        "Non-serious",
        "mild",
        "actual",
    )
    assert event["visit"] == "dosing-1"
    assert event["suspect"] in {r["administration"] for r in tables.rows["dosing"]}


def test_no_identity_reaches_a_table(tables: Tables) -> None:
    text = orjson.dumps(tables.rows)
    for secret in (b"SYNTHETIC Participant", b"SYN-1000", b"Participant12", b"1963-12-15"):
        assert secret not in text
