"""The trial's analysis tables: the ViewDefinitions of mappings/views run over research-view
resources, then the columns FHIRPath cannot give added in Python (study days, protocol visit
windows, instruments, item scores), each with its codebook entry (report/columns.py).

Study day = days from the participant's visit at the protocol's anchor (baseline, V3, day 0),
the day the protocol's offsets count from; both dates as the research view gives them, so
the interval is exact under either dating method of the policy.
https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_bridge.mapping.loader import Mappings
from fhir_bridge.mapping.spec import InstrumentSpec, split_code
from fhir_bridge.report.columns import DERIVED, Column, TrialView
from fhir_bridge.report.values import ValueSet, value_sets
from fhir_bridge.views import run

# the tables of the report, in codebook order; `patients` is joined into `participants`
TABLES = ("participants", "visits", "scores_long", "items_long", "dosing", "adverse_events")
JOINED = {"participants": "patients"}

Row = dict[str, Any]
Source = Callable[[str], Iterable[dict[str, Any]]]  # the research view's resources of a type


@dataclass
class Tables:
    rows: dict[str, list[Row]]
    codebook: dict[str, tuple[Column, ...]]
    descriptions: dict[str, str]
    values: dict[str, ValueSet] = field(default_factory=dict)  # the value sets columns name

    def add(self, name: str, rows: list[Row], columns: tuple[Column, ...], about: str) -> None:
        self.rows[name] = rows
        self.codebook[name] = columns
        self.descriptions[name] = about


def trial_tables(source: Source, m: Mappings, views: Mapping[str, TrialView]) -> Tables:
    """Every table of TABLES: the view's rows with the derived columns, in participant order
    (by study subject id) and study day."""
    raw = {name: list(run(view.definition, source(view.resource))) for name, view in views.items()}
    protocol = _Protocol(m)
    visits = protocol.visits(raw["visits"])
    days = _Days({(v["participant"], v["encounter"]): v for v in visits}, protocol.baselines)
    participants = _participants(raw["participants"], raw["patients"], visits, days, m)
    order = {p["participant"]: n for n, p in enumerate(participants)}
    by_total = {spec.total_coding: spec for spec in m.instruments}
    scores = [
        {
            **row,
            "instrument": _id(by_total.get((row["code_system"], row["code"]))),
            **days.at(row, "date"),
        }
        for row in raw["scores_long"]
    ]
    items = [{**row, **_item(row, m), **days.at(row, "authored")} for row in raw["items_long"]]
    dosing = [
        {**row, "session": days.visit(row), "study_day": days.at(row, "date")["study_day"]}
        for row in raw["dosing"]
    ]
    events = [{**row, **days.at(row, "date")} for row in raw["adverse_events"]]
    rows = {
        "participants": participants,
        "visits": visits,
        "scores_long": scores,
        "items_long": items,
        "dosing": dosing,
        "adverse_events": events,
    }
    for name in TABLES[1:]:
        rows[name].sort(key=lambda r: (order.get(r["participant"], len(order)), _key(r)))
    codebook, descriptions = {}, {}
    for name in TABLES:
        view = views[name]
        joined = views[JOINED[name]].columns[1:] if name in JOINED else ()
        columns = (*view.columns, *joined, *DERIVED[name])
        seen: dict[str, Column] = {}
        for column in columns:
            seen.setdefault(column.name, column)
        codebook[name] = (
            tuple(seen[c] for c in rows[name][0]) if rows[name] else tuple(seen.values())
        )
        descriptions[name] = f"{view.title}. {view.description}"
    return Tables(rows, codebook, descriptions, value_sets(m))


def _key(row: Row) -> tuple[int, str]:
    day = row.get("study_day")
    return (day if isinstance(day, int) else 10**6, str(row.get("link_id") or ""))


def _id(spec: InstrumentSpec | None) -> str | None:
    return spec.id if spec else None


def _item(row: Row, m: Mappings) -> Row:
    spec = m.instrument_for_questionnaire(str(row["questionnaire"] or ""))
    item = spec.item(str(row["link_id"])) if spec else None
    score = row["answer_integer"]
    if spec is not None and item is not None and item.answers and row["answer_code"]:
        given = (row["answer_system"], row["answer_code"])
        options = spec.answer_sets[item.answers]
        score = next((o.score for o in options if split_code(o.code) == given), None)
    return {"instrument": _id(spec), "score": score}


def day_of(value: Any) -> date | None:
    """The calendar date of a FHIR date or dateTime (its local date); None when partial."""
    text = str(value or "")
    try:
        return date.fromisoformat(text[:10]) if len(text) >= 10 else None
    except ValueError:
        return None


class _Protocol:
    """The protocol's visit schedule applied to one participant's visits."""

    def __init__(self, m: Mappings) -> None:
        self.m = m
        self.anchor = next(v.code for v in m.protocol.visits if v.anchor is None)
        self.baselines: dict[str, date] = {}

    def visits(self, rows: list[Row]) -> list[Row]:
        for row in sorted(rows, key=lambda r: str(r["start"] or "")):
            found = day_of(row["start"])
            if row["visit"] == self.anchor and found and row["participant"] not in self.baselines:
                self.baselines[row["participant"]] = found
        actual: dict[tuple[str, str], int] = {}
        out = []
        for row in rows:
            day = _between(self.baselines.get(row["participant"]), day_of(row["start"]))
            if day is not None:
                actual.setdefault((row["participant"], row["visit"]), day)
            out.append({**row, "date": _iso(day_of(row["start"])), "study_day": day})
        return [self._windowed(row, actual) for row in out]

    def _windowed(self, row: Row, actual: dict[tuple[str, str], int]) -> Row:
        spec = self.m.visit(str(row["visit"]))
        if spec is None:
            return {**row, **dict.fromkeys(("visit_label", "kind", "planned_day", "anchor"))}
        planned = self.m.protocol.nominal_day(spec.code)
        target = planned
        if spec.anchor is not None and (row["participant"], spec.anchor) in actual:
            target = actual[(row["participant"], spec.anchor)] + spec.offset_days
        day = row["study_day"]
        deviation = None if day is None else day - target
        return {
            **row,
            "visit_label": spec.visit,
            "kind": spec.kind,
            "planned_day": planned,
            "anchor": spec.anchor,
            "target_day": target,
            "deviation_days": deviation,
            "window_days": spec.window_days,
            "in_window": None if deviation is None else abs(deviation) <= spec.window_days,
        }


class _Days:
    """Visit and study day of rows that carry an encounter key and a date."""

    def __init__(self, visits: dict[tuple[str, str], Row], baselines: dict[str, date]) -> None:
        self.visits = visits
        self.baselines = baselines

    def visit(self, row: Row) -> str | None:
        found = self.visits.get((row["participant"], row["encounter"]))
        return found["visit"] if found else None

    def at(self, row: Row, column: str) -> Row:
        day = _between(self.baselines.get(row["participant"]), day_of(row[column]))
        return {"visit": self.visit(row), "study_day": day}

    def of(self, participant: str, value: Any) -> int | None:
        return _between(self.baselines.get(participant), day_of(value))


def _between(start: date | None, end: date | None) -> int | None:
    return None if start is None or end is None else (end - start).days


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _participants(
    subjects: list[Row], patients: list[Row], visits: list[Row], days: _Days, m: Mappings
) -> list[Row]:
    people = {p["participant"]: p for p in patients}
    last: dict[str, Row] = {}
    for visit in visits:
        day = visit["study_day"]
        seen = last.get(visit["participant"])
        if day is not None and (seen is None or day >= seen["study_day"]):
            last[visit["participant"]] = visit
    single_arm = m.protocol.study.arm.name  # the protocol names one arm
    out = []
    for row in subjects:
        key = row["participant"]
        person = people.get(key, {})
        out.append(
            {
                **row,
                "arm": row["actual_arm"] or row["assigned_arm"] or single_arm,
                "sex": person.get("sex"),
                "birth_year": person.get("birth_year"),
                "enrolment_day": days.of(key, row["enrolment_date"]),
                "withdrawal_day": days.of(key, row["withdrawal_date"]),
                "last_visit": last[key]["visit"] if key in last else None,
            }
        )
    out.sort(key=lambda r: (str(r["study_subject_id"] or "~"), str(r["participant"])))
    return out
