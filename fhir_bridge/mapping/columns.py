"""CSV exports of a research data-capture system (one row per participant and visit, one
column per item), as a column map describes: the layout, the rows read and checked, and the
visit Encounter and score Observations of a row (mapping/table_export.py writes the table
back)."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import MappingError
from fhir_bridge.mapping.observations import (
    score_observation,
    study_extension,
)
from fhir_bridge.mapping.questionnaires import coding
from fhir_bridge.mapping.spec import (
    CANONICAL,
    SID,
    ColumnMapSpec,
    InstrumentSpec,
    ItemSpec,
)
from fhir_bridge.mapping.subjects import SUBJECT_ID_RULE, is_subject_id

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

ENCOUNTER_SYSTEM = f"{SID}/visit-encounter"
OBSERVATION_SYSTEM = f"{SID}/score-observation"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

Column = tuple[str, InstrumentSpec, ItemSpec | None]  # item None = the total column


@dataclass(frozen=True)
class Scores:
    """One administration of an instrument in a row: item values by linkId and the total
    (as given, or computed when the cell is empty and every item the rule needs is there)."""

    values: dict[str, int]
    total: int | None


@dataclass(frozen=True)
class VisitRow:
    """A checked row: `line` is its line in the file (the header is line 1)."""

    line: int
    subject: str
    visit: str
    date: str
    scores: dict[str, Scores]  # by instrument id, in column map order

    @property
    def key(self) -> str:
        """The visit Encounter's identifier value."""
        return f"{self.subject}/{self.visit}"


def data_columns(cmap: ColumnMapSpec, m: Mappings) -> list[Column]:
    """Instrument columns in order: `<prefix><linkId>` per item, then `<prefix>total`."""
    result: list[Column] = []
    for entry in cmap.instruments:
        spec = m.instrument(entry.instrument)
        for item in spec.items:
            result.append((f"{entry.prefix}{item.link_id.replace('-', '_')}", spec, item))
        result.append((f"{entry.prefix}total", spec, None))
    return result


def required_columns(cmap: ColumnMapSpec) -> list[str]:
    return [cmap.subject_column, cmap.visit_column, cmap.date_column]


def header(cmap: ColumnMapSpec, m: Mappings) -> list[str]:
    fixed = [*required_columns(cmap), cmap.status_column, cmap.withdrawal_column]
    return fixed + [name for name, _, _ in data_columns(cmap, m)]


def urn(system: str, value: str) -> str:
    # Deterministic ids: importing the same file twice yields the same fullUrls.
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{system}|{value}')}"


def _parse_int(text: str, low: int, high: int, where: str, issues: list[Issue]) -> int | None:
    try:
        value = int(text)
    except ValueError:
        issues.append(Issue("error", "value", f"{text!r} is not a whole number", where))
        return None
    if not low <= value <= high:
        issues.append(Issue("error", "value", f"{value} is outside {low}..{high}", where))
        return None
    return value


def _read_row(
    row: dict[str, str], n: int, cmap: ColumnMapSpec, m: Mappings, issues: list[Issue]
) -> VisitRow | None:
    subject, visit_code = row[cmap.subject_column].strip(), row[cmap.visit_column].strip()
    when = row[cmap.date_column].strip()
    before = len(issues)
    if not is_subject_id(subject):
        issues.append(
            Issue(
                "error",
                "value",
                f"bad subject id {subject!r}: {SUBJECT_ID_RULE}",
                f"line {n}, column {cmap.subject_column}",
            )
        )
    if m.visit(visit_code) is None:
        issues.append(
            Issue(
                "error",
                "code-invalid",
                f"visit {visit_code!r} is not in the protocol",
                f"line {n}, column {cmap.visit_column}",
            )
        )
    try:
        date.fromisoformat(when)
    except ValueError:
        issues.append(
            Issue(
                "error",
                "value",
                f"{when!r} is not a date (YYYY-MM-DD)",
                f"line {n}, column {cmap.date_column}",
            )
        )
    values: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    seen: dict[str, InstrumentSpec] = {}
    total_columns: dict[str, str] = {}
    for name, spec, item in data_columns(cmap, m):
        if item is None:
            total_columns[spec.id] = name
        text = (row.get(name) or "").strip()
        if not text:
            continue
        seen[spec.id] = spec
        low, high = (item.min, item.max) if item else (spec.total.min, spec.total.max)
        value = _parse_int(text, low, high, f"line {n}, column {name}", issues)
        if value is not None and item is not None:
            values.setdefault(spec.id, {})[item.link_id] = value
        elif value is not None:
            totals[spec.id] = value
    scores: dict[str, Scores] = {}
    for spec in seen.values():
        expected = spec.score(values.get(spec.id, {}))
        given = totals.get(spec.id)
        if given is not None and expected is not None and expected != given:
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    f"{spec.name} total {given} differs from the items ({expected})",
                    f"line {n}, column {total_columns[spec.id]}",
                )
            )
        # an empty total with every item the scoring rule needs is computed, not missing
        scores[spec.id] = Scores(values.get(spec.id, {}), given if given is not None else expected)
    if len(issues) > before:
        return None
    return VisitRow(n, subject, visit_code, when, scores)


def read_table(csv_text: str, map_name: str, m: Mappings) -> list[VisitRow]:
    """Every row of the CSV, checked; MappingError lists every bad cell as `line N, column X`
    (file line numbers: the header is line 1). Nothing is read past a bad header."""
    cmap = m.column_map(map_name)
    reader = csv.reader(io.StringIO(csv_text))
    first = next(reader, None)
    known = header(cmap, m)
    if first is None or not any(cell.strip() for cell in first):
        raise MappingError(
            f"the file is empty: expected a header line ({', '.join(known[:3])}, ...) "
            "and a row per participant and visit",
            expression="line 1",
        )
    fields = [cell.strip() for cell in first]
    if not set(fields) & set(known):
        raise MappingError(
            f"line 1 is not a header: it names none of the columns of map {map_name!r} "
            f"(expected {', '.join(known[:3])}, ...)",
            expression="line 1",
        )
    issues = [
        Issue("error", "structure", f"unknown column {name!r}", f"line 1, column {name}")
        for name in fields
        if name not in known
    ]
    issues += [
        Issue("error", "required", f"missing column {name!r}", f"line 1, column {name}")
        for name in required_columns(cmap)
        if name not in fields
    ]
    if issues:
        raise MappingError(issues=issues)
    rows: list[VisitRow] = []
    seen_rows: dict[tuple[str, str], int] = {}
    for cells in reader:
        n = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        if len(cells) != len(fields):
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"{len(cells)} cells where the header has {len(fields)}",
                    f"line {n}",
                )
            )
            continue
        row = dict(zip(fields, cells, strict=True))
        key = (row[cmap.subject_column].strip(), row[cmap.visit_column].strip())
        if key in seen_rows:
            issues.append(
                Issue(
                    "error",
                    "business-rule",
                    f"duplicate participant and visit (line {seen_rows[key]})",
                    f"line {n}, column {cmap.visit_column}",
                )
            )
            continue
        seen_rows[key] = n
        visit_row = _read_row(row, n, cmap, m, issues)
        if visit_row is not None:
            rows.append(visit_row)
    if not rows and not issues:
        raise MappingError("the file has a header and no rows", expression="line 2")
    if issues:
        raise MappingError(issues=issues)
    return rows


def visit_encounter(row: VisitRow, m: Mappings, patient: str, study: str) -> dict[str, Any]:
    """The visit Encounter of a row (profile visit-encounter)."""
    visit = m.visit(row.visit)
    assert visit is not None  # read_table checked it
    return {
        "resourceType": "Encounter",
        "meta": {"profile": [f"{CANONICAL}/StructureDefinition/visit-encounter"]},
        "extension": [study_extension(study)],
        "identifier": [{"system": ENCOUNTER_SYSTEM, "value": row.key}],
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [{"coding": [coding(f"visit:{row.visit}", visit.display)]}],
        "subject": {"reference": patient},
        "period": {"start": row.date},
    }


def row_observation(
    row: VisitRow, spec: InstrumentSpec, patient: str, encounter: str, study: str
) -> dict[str, Any]:
    """The score Observation of one instrument of a row."""
    scores = row.scores[spec.id]
    return score_observation(
        spec,
        scores.values,
        scores.total,
        subject=patient,
        effective=row.date,
        encounter=encounter,
        study=study,
        identifier={"system": OBSERVATION_SYSTEM, "value": f"{row.key}/{spec.id}"},
    )
