"""CSV ↔ FHIR for the data-capture export: lossless round trip, conditional creates, errors."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_bridge.domain.fhir import parse_model
from fhir_bridge.errors import MappingError
from fhir_bridge.mapping import Mappings, bundle_to_table, check_clinical, table_to_bundle
from fhir_bridge.mapping.columns import data_columns, header

MAP = "visit-scores"


def _csv(rows: list[list[str]], m: Mappings) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header(m.column_map(MAP), m))
    writer.writerows(rows)
    return out.getvalue()


def _row(
    m: Mappings, subject: str, visit: str, day: str, cells: dict[str, str] | None = None
) -> list[str]:
    cells = cells or {}
    return [subject, visit, day] + [
        cells.get(n, "") for n, _, _ in data_columns(m.column_map(MAP), m)
    ]


def _madrs_cells(scores: list[int], total: int | None) -> dict[str, str]:
    cells = {f"madrs_{i}": str(s) for i, s in enumerate(scores, 1)}
    if total is not None:
        cells["madrs_total"] = str(total)
    return cells


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_csv_round_trip_is_lossless(m: Mappings) -> None:
    text = _csv(
        [
            _row(
                m,
                "S01",
                "baseline",
                "2023-02-01",
                _madrs_cells([3] * 10, 30)
                | {
                    "sds_1": "6",
                    "sds_2": "7",
                    "sds_3": "5",
                    "sds_days_lost": "2",
                    "sds_total": "18",
                },
            ),
            _row(m, "S01", "post-treatment", "2023-05-03", _madrs_cells([1] * 10, None)),
            _row(m, "S02", "baseline", "2023-02-08", {"madrs_total": "27"}),
            _row(m, "S02", "dosing-1", "2023-02-15"),
        ],
        m,
    )
    bundle = table_to_bundle(text, MAP, m)
    assert bundle_to_table([bundle], MAP, m) == text


def test_bundle_entries_are_conditional_creates_on_identifiers(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", _madrs_cells([3] * 10, 30))], m)
    bundle = table_to_bundle(text, MAP, m)
    assert bundle["type"] == "transaction"
    requests = [e["request"] for e in bundle["entry"]]
    assert [r["url"] for r in requests] == ["ResearchStudy", "Patient", "Encounter", "Observation"]
    sid = "https://fhir-bridge.org/fhir/sid"
    assert [r["ifNoneExist"] for r in requests] == [
        f"identifier={sid}/eudract-number|2021-000805-26",
        f"identifier={sid}/study-subject|S01",
        f"identifier={sid}/visit-encounter|S01/baseline",
        f"identifier={sid}/score-observation|S01/baseline/madrs",
    ]
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])
    [obs] = _resources(bundle, "Observation")
    [enc] = _resources(bundle, "Encounter")
    assert obs["encounter"]["reference"] == bundle["entry"][2]["fullUrl"]
    assert (
        obs["subject"]["reference"] == enc["subject"]["reference"] == bundle["entry"][1]["fullUrl"]
    )
    assert check_clinical(obs, m) == [] and check_clinical(enc, m) == []
    for entry in bundle["entry"]:
        parse_model(entry["resource"])
    parse_model(bundle)


def test_reimport_yields_the_same_bundle(m: Mappings) -> None:
    text = _csv([_row(m, "S03", "follow-up-7m", "2023-09-01", {"gad7_total": "4"})], m)
    assert table_to_bundle(text, MAP, m) == table_to_bundle(text, MAP, m)


def _errors(text: str, m: Mappings) -> list[tuple[str, str | None]]:
    with pytest.raises(MappingError) as caught:
        table_to_bundle(text, MAP, m)
    return [(i.code, i.expression) for i in caught.value.issues]


def test_out_of_range_cell_names_row_and_column(m: Mappings) -> None:
    cells = _madrs_cells([3] * 10, None) | {"madrs_4": "7"}
    text = _csv(
        [_row(m, "S01", "baseline", "2023-02-01"), _row(m, "S02", "baseline", "2023-02-01", cells)],
        m,
    )
    assert _errors(text, m) == [("value", "row 2, column madrs_4")]


def test_total_differing_from_items_is_rejected(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", _madrs_cells([3] * 10, 29))], m)
    assert _errors(text, m) == [("invariant", "row 1, column madrs_total")]


def test_unknown_visit_unknown_column_and_bad_date_are_rejected(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "dosing-3", "2023-02-30")], m)
    assert _errors(text, m) == [
        ("code-invalid", "row 1, column visit"),
        ("value", "row 1, column visit_date"),
    ]
    assert _errors("subject_id,visit,visit_date,madrs_11\n", m) == [
        ("structure", "column madrs_11")
    ]


def test_duplicate_participant_visit_row_is_rejected(m: Mappings) -> None:
    row = _row(m, "S01", "baseline", "2023-02-01")
    assert _errors(_csv([row, row], m), m) == [("business-rule", "row 2, column visit")]


def test_export_reads_subject_id_from_research_subject(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", {"isi_total": "9"})], m)
    bundle = table_to_bundle(text, MAP, m)
    stored = []
    for n, entry in enumerate(bundle["entry"]):
        resource = dict(entry["resource"], id=str(n))
        if resource["resourceType"] == "Patient":
            resource["identifier"] = [
                {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "01017012345"}
            ]
        stored.append(resource)
    ids = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{n}" for n, e in enumerate(bundle["entry"])
    }
    for resource in stored:
        for key in ("subject", "encounter"):
            if key in resource:
                resource[key] = {"reference": ids[resource[key]["reference"]]}
    stored.append(
        {
            "resourceType": "ResearchSubject",
            "id": "rs1",
            "status": "on-study",
            "identifier": [
                {"system": "https://fhir-bridge.org/fhir/sid/study-subject", "value": "S01"}
            ],
            "study": {"reference": "ResearchStudy/0"},
            "individual": {"reference": "Patient/1"},
        }
    )
    assert bundle_to_table(stored, MAP, m) == text


@st.composite
def _tables(draw: st.DrawFn, m: Mappings) -> str:
    cmap = m.column_map(MAP)
    visits = [v.code for v in m.protocol.visits]
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(["S01", "S02", "S10", "P-7"]), st.sampled_from(visits)),
            unique=True,
            max_size=6,
        )
    )
    rows = []
    for subject, visit in keys:
        day = draw(st.dates()).isoformat()
        cells: dict[str, str] = {}
        for entry in cmap.instruments:
            if not draw(st.booleans()):
                continue
            spec = m.instrument(entry.instrument)
            values = {}
            for item in spec.items:
                if draw(st.integers(0, 4)) > 0:  # most items answered, some missing
                    values[item.link_id] = draw(st.integers(item.min, item.max))
            total = spec.score(values)
            if total is None and draw(st.booleans()):
                total = draw(st.integers(spec.total.min, spec.total.max))
            if total is not None and draw(st.integers(0, 5)) == 0:
                total = None
            for name, s, item in data_columns(cmap, m):
                if s is not spec:
                    continue
                value = total if item is None else values.get(item.link_id)
                if value is not None:
                    cells[name] = str(value)
        rows.append(((subject, day, visits.index(visit)), _row(m, subject, visit, day, cells)))
    # tables come back in canonical order: subject, visit date, protocol visit order
    return _csv([row for _, row in sorted(rows, key=lambda r: r[0])], m)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_tables_round_trip_losslessly(m: Mappings, data: st.DataObject) -> None:
    text = data.draw(_tables(m))
    assert bundle_to_table([table_to_bundle(text, MAP, m)], MAP, m) == text
