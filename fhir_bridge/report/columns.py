"""The columns of the trial's tables with their codebook entries: the ViewDefinitions of
mappings/views (each column's description, label, unit and value set from its tags, and the
FHIRPath it is read by, from the resource) and the columns computed in Python after the views.

https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html (column.tag: label, unit,
values)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_bridge.mapping.loader import DEFAULT_PATH, read_json
from fhir_bridge.views import ViewDefinition

VIEWS = DEFAULT_PATH / "views"
TABLES_STEP = "Python after the views: fhir_bridge/report/tables.py"
VISIT_CODE = (
    "Encounter.type.coding.where(system = 'https://fhir-bridge.org/fhir/CodeSystem/visit').code"
)
BASELINE_START = "Encounter.period.start of the baseline visit"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a FHIR type name, as ViewDefinition.select.column.type
    description: str
    derived: bool = False  # computed in Python after the view
    label: str = ""
    unit: str | None = None  # UCUM
    values: str | None = None  # the name of its value set (report/values.py)
    path: str = ""  # the FHIRPath it is read by, or the elements it is computed from
    source: str = ""  # the view, or the Python step that computes it
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class TrialView:
    name: str
    resource: str
    title: str
    description: str
    definition: ViewDefinition
    columns: tuple[Column, ...]


def load_views(folder: Path = VIEWS) -> dict[str, TrialView]:
    """The trial's ViewDefinitions in mappings/views, checked and compiled, by name."""
    views: dict[str, TrialView] = {}
    for path in sorted(folder.glob("*.json")):
        data = read_json(path)
        constants = {
            c["name"]: next(v for k, v in c.items() if k.startswith("value"))
            for c in data.get("constant", [])
        }
        source = f"view {data['name']} (mappings/views/{path.name})"
        columns = tuple(
            _column(c, _fhir_path(context, c["path"], constants), source)
            for context, select in _selects(data["select"], data["resource"])
            for c in select.get("column", [])
        )
        views[data["name"]] = TrialView(
            data["name"],
            data["resource"],
            data["title"],
            data["description"],
            ViewDefinition.parse(data),
            columns,
        )
    return views


def _column(data: dict[str, Any], path: str, source: str) -> Column:
    tags = {tag["name"]: tag["value"] for tag in data.get("tag", [])}
    return Column(
        data["name"],
        data.get("type", "string"),
        data["description"],
        label=tags.get("label", ""),
        unit=tags.get("unit"),
        values=tags.get("values"),
        path=path,
        source=source,
    )


def _selects(selects: list[dict[str, Any]], context: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """Each select with the FHIRPath of the nodes its columns are read from; unionAll
    branches share their columns, so the first one stands for all."""
    for select in selects:
        here = context
        if path := select.get("forEach") or select.get("forEachOrNull"):
            here = f"{context}.{path}"
        elif path := select.get("repeat"):
            here = f"{context}.repeat({' | '.join(path)})"
        yield here, select
        yield from _selects(select.get("select", []), here)
        yield from _selects(select.get("unionAll", [])[:1], here)


def _fhir_path(context: str, path: str, constants: dict[str, Any]) -> str:
    """`path` from the resource, the view's constants written out."""
    path = re.sub(
        r"%(\w+)",
        lambda m: f"'{constants[m[1]]}'" if m[1] in constants else m[0],
        path,
    )
    depth, union = 0, False
    for char in path:
        depth += {"(": 1, ")": -1}.get(char, 0)
        union = union or (char == "|" and depth == 0)
    return f"{context}.select({path})" if union else f"{context}.{path}"


def _derived(
    name: str,
    type_: str,
    label: str,
    description: str,
    path: str,
    unit: str | None = None,
    values: str | None = None,
) -> Column:
    return Column(name, type_, description, True, label, unit, values, path, TABLES_STEP)


def _study_day(what: str, date: str) -> Column:
    return _derived(
        "study_day",
        "integer",
        "Study day",
        f"Days from the participant's baseline visit (V3, day 0) to {what}; computed in Python "
        "after the view (FHIRPath has no difference of two dates).",
        f"{date}, {BASELINE_START}",
        "d",
    )


def _visit(reference: str) -> Column:
    return _derived(
        "visit",
        "code",
        "Visit",
        "Visit code of the encounter, from the `visits` rows (joined on the encounter key in "
        "Python).",
        f"{reference} -> {VISIT_CODE}",
        values="visit",
    )


def _instrument(path: str) -> Column:
    return _derived(
        "instrument",
        "code",
        "Instrument",
        "Instrument id of mappings/instruments (madrs, sds, phq9, gad7, isi, pcl5, cssrs), found "
        "in Python from the code or questionnaire.",
        path,
        values="instrument",
    )


_PROTOCOL = f"{VISIT_CODE} -> mappings/protocol"
DERIVED: dict[str, tuple[Column, ...]] = {
    "participants": (
        _derived(
            "arm",
            "string",
            "Arm",
            "Arm: actual_arm, else assigned_arm; where the record names neither and the protocol "
            "has a single arm (mappings/protocol), that arm. Computed in Python.",
            "ResearchSubject.actualArm | ResearchSubject.assignedArm",
        ),
        _derived(
            "enrolment_day",
            "integer",
            "Enrolment study day",
            "Study day of enrolment_date (negative: before baseline); computed in Python.",
            f"ResearchSubject.period.start, {BASELINE_START}",
            "d",
        ),
        _derived(
            "withdrawal_day",
            "integer",
            "Withdrawal study day",
            "Study day of withdrawal_date; empty when not withdrawn; computed in Python.",
            f"ResearchSubject.period.end (status withdrawn), {BASELINE_START}",
            "d",
        ),
        _derived(
            "last_visit",
            "code",
            "Last visit attended",
            "The last visit attended (latest study day in `visits`); for a withdrawn participant "
            "the visit after which they withdrew. Computed in Python.",
            f"{VISIT_CODE}, Encounter.period.start",
            values="visit",
        ),
    ),
    "visits": (
        _derived(
            "visit_label",
            "string",
            "Visit label",
            "Protocol visit label (V0..V14, FU).",
            _PROTOCOL,
            values="visit-label",
        ),
        _derived(
            "kind",
            "code",
            "Visit kind",
            "Protocol visit kind (assessment, dosing, ...).",
            _PROTOCOL,
            values="visit-kind",
        ),
        _derived(
            "date",
            "date",
            "Visit date",
            "Date of the visit (date part of start).",
            "Encounter.period.start",
        ),
        _study_day("this visit", "Encounter.period.start"),
        _derived(
            "planned_day",
            "integer",
            "Planned study day",
            "Nominal study day of the visit in the protocol (mappings/protocol offsets followed "
            "along their anchor chain).",
            _PROTOCOL,
            "d",
        ),
        _derived(
            "anchor",
            "code",
            "Anchor visit",
            "The protocol visit this visit's offset counts from.",
            _PROTOCOL,
            values="visit",
        ),
        _derived(
            "target_day",
            "integer",
            "Target study day",
            "Study day the visit was due: the participant's actual study day of the anchor visit "
            "plus the protocol offset (the nominal day when the anchor visit is missing).",
            f"Encounter.period.start of the anchor visit, {BASELINE_START}",
            "d",
        ),
        _derived(
            "deviation_days",
            "integer",
            "Deviation from target",
            "study_day - target_day.",
            "Encounter.period.start",
            "d",
        ),
        _derived(
            "window_days",
            "integer",
            "Visit window",
            "Protocol window (+/- days) around target_day.",
            _PROTOCOL,
            "d",
        ),
        _derived(
            "in_window",
            "boolean",
            "Within the visit window",
            "Whether |deviation_days| <= window_days; empty for visits outside the protocol.",
            "Encounter.period.start",
        ),
    ),
    "scores_long": (
        _instrument("Observation.code.coding.first()"),
        _visit("Observation.encounter"),
        _study_day("the administration", "Observation.effective.ofType(dateTime)"),
    ),
    "items_long": (
        _instrument("QuestionnaireResponse.questionnaire"),
        _derived(
            "score",
            "integer",
            "Item score",
            "Item score: the integer answer, or the score of the coded answer in the "
            "instrument's answer set (mappings/instruments); computed in Python.",
            "QuestionnaireResponse.item.answer.select(value.ofType(integer) | "
            "value.ofType(Coding))",
            "{score}",
        ),
        _visit("QuestionnaireResponse.encounter"),
        _study_day("the response", "QuestionnaireResponse.authored"),
    ),
    "dosing": (
        _derived(
            "session",
            "code",
            "Dosing session",
            "Dosing session (dosing-1 or dosing-2): the visit code of the dose's encounter.",
            f"MedicationAdministration.context -> {VISIT_CODE}",
            values="visit",
        ),
        _study_day(
            "the dose",
            "MedicationAdministration.select(effective.ofType(dateTime) | "
            "effective.ofType(Period).start)",
        ),
    ),
    "adverse_events": (
        _visit("AdverseEvent.encounter"),
        _study_day("the event", "AdverseEvent.date"),
    ),
}
