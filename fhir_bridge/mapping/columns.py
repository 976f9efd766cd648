"""CSV exports of a research data-capture system (one row per participant and visit, one
column per item) read into checked visit rows, and visit Encounters with their score
Observations written back as such a table, as a column map describes."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.spreadsheet import safe_cell
from fhir_bridge.errors import MappingError
from fhir_bridge.mapping.observations import (
    component_values,
    score_observation,
    study_extension,
    total_value,
)
from fhir_bridge.mapping.questionnaires import coding
from fhir_bridge.mapping.spec import (
    CANONICAL,
    SID,
    SYSTEMS,
    ColumnMapSpec,
    InstrumentSpec,
    ItemSpec,
)
from fhir_bridge.mapping.subjects import SUBJECT_ID_RULE, SUBJECT_SYSTEM, is_subject_id

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


@dataclass(frozen=True)
class TableExport:
    """The CSV text and the bad data met on the way, each named and left out."""

    text: str
    issues: list[Issue]


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


def _named(resources: Iterable[dict[str, Any]]) -> list[tuple[list[str], dict[str, Any]]]:
    """Each resource with every way a reference may name it (fullUrl, Type/id)."""
    named: list[tuple[list[str], dict[str, Any]]] = []
    for resource in resources:
        if resource.get("resourceType") == "Bundle":
            named += [
                (_names(e["resource"], e.get("fullUrl")), e["resource"])
                for e in resource.get("entry", [])
                if isinstance(e.get("resource"), dict)
            ]
        else:
            named.append((_names(resource, None), resource))
    return named


def _names(resource: dict[str, Any], full_url: str | None) -> list[str]:
    names = [full_url] if full_url else []
    if resource.get("id"):
        names.append(f"{resource['resourceType']}/{resource['id']}")
    return names


def _reference(resource: dict[str, Any], element: str) -> str:
    value = resource.get(element)
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) else ""


def _visit_code(encounter: dict[str, Any]) -> str | None:
    return next(
        (
            str(c["code"])
            for t in encounter.get("type", [])
            for c in t.get("coding", [])
            if c.get("system") == SYSTEMS["visit"] and c.get("code")
        ),
        None,
    )


def _subject_id(subject: dict[str, Any]) -> str | None:
    return next(
        (
            str(i["value"])
            for i in subject.get("identifier", [])
            if i.get("system") == SUBJECT_SYSTEM and i.get("value")
        ),
        None,
    )


def bundle_to_table(resources: Iterable[dict[str, Any]], map_name: str, m: Mappings) -> TableExport:
    """ResearchSubjects, visit Encounters and score Observations → CSV (the inverse of
    read_table), in time linear in the resources.

    Accepts resources and/or Bundles; one row per visit Encounter, ordered by study subject,
    visit date and protocol visit order, so the table does not depend on server order. Bad
    data does not stop the table: an Encounter whose Patient has no study subject id is left
    out, and an instrument with two score Observations for one visit is left empty; each is
    named in `issues`. Every text cell is made safe for spreadsheets (domain/spreadsheet.py).
    """
    cmap = m.column_map(map_name)
    named = _named(resources)
    issues: list[Issue] = []
    wanted = {entry.instrument for entry in cmap.instruments}
    participants: dict[str, dict[str, Any]] = {}  # Patient reference → its ResearchSubject
    observations: dict[str, list[tuple[InstrumentSpec, list[str], dict[str, Any]]]] = {}
    encounters: list[tuple[list[str], dict[str, Any]]] = []
    for names, resource in named:
        kind = resource.get("resourceType")
        if kind == "ResearchSubject" and _subject_id(resource):
            patient = _reference(resource, "individual")
            if patient in participants and _subject_id(participants[patient]) != _subject_id(
                resource
            ):
                issues.append(
                    Issue(
                        "warning",
                        "business-rule",
                        f"{patient} has two study subject ids; "
                        f"{_subject_id(participants[patient])!r} is used",
                        f"ResearchSubject {' '.join(names)}",
                    )
                )
                continue
            participants[patient] = resource
        elif kind == "Encounter" and _visit_code(resource) is not None:
            encounters.append((names, resource))
        elif kind == "Observation":
            spec = next(
                (
                    total_of
                    for c in resource.get("code", {}).get("coding", [])
                    if (total_of := m.instrument_for_total(c.get("system"), c.get("code")))
                ),
                None,
            )
            if spec is not None and spec.id in wanted:
                ref = _reference(resource, "encounter")
                observations.setdefault(ref, []).append((spec, names, resource))
    visit_order = {visit.code: n for n, visit in enumerate(m.protocol.visits)}
    columns = data_columns(cmap, m)
    names_of = header(cmap, m)
    rows: list[tuple[tuple[str, str, int], list[str]]] = []
    for names, encounter in encounters:
        visit = str(_visit_code(encounter))
        patient = _reference(encounter, "subject")
        research_subject = participants.get(patient)
        if research_subject is None:
            issues.append(
                Issue(
                    "warning",
                    "not-found",
                    f"no study subject id for {patient or 'a missing subject'!r} "
                    "(no ResearchSubject with one names it): the visit is left out",
                    f"Encounter {names[-1] if names else '(no id)'}",
                )
            )
            continue
        subject = str(_subject_id(research_subject))
        status = str(research_subject.get("status", ""))
        withdrawn = (
            str(research_subject.get("period", {}).get("end", ""))[:10]
            if status == "withdrawn"
            else ""
        )
        when = str(encounter.get("period", {}).get("start", ""))[:10]
        # the text cells the server's data fills; the score cells are whole numbers
        cells = {
            cmap.subject_column: safe_cell(subject),
            cmap.visit_column: safe_cell(visit),
            cmap.date_column: safe_cell(when),
            cmap.status_column: safe_cell(status),
            cmap.withdrawal_column: safe_cell(withdrawn),
        }
        found: dict[str, list[tuple[list[str], dict[str, Any]]]] = {}
        for name in names:
            for spec, obs_names, obs in observations.get(name, []):
                found.setdefault(spec.id, []).append((obs_names, obs))
        for entry in cmap.instruments:
            spec = m.instrument(entry.instrument)
            administrations = found.get(spec.id, [])
            if len(administrations) > 1:
                ids = ", ".join(n[-1] for n, _ in administrations if n)
                issues.append(
                    Issue(
                        "warning",
                        "duplicate",
                        f"{len(administrations)} {spec.name} Observations for one visit "
                        f"({ids}): its {spec.name} cells are left empty",
                        f"Encounter {names[-1] if names else '(no id)'}",
                    )
                )
                continue
            if not administrations:
                continue
            obs = administrations[0][1]
            values, total = component_values(spec, obs), total_value(obs)
            for name, s, item in columns:
                if s is spec:
                    value = total if item is None else values.get(item.link_id)
                    cells[name] = "" if value is None else str(value)
        order = (subject, when, visit_order.get(visit, len(visit_order)))
        rows.append((order, [cells.get(name, "") for name in names_of]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names_of)
    writer.writerows(row for _, row in sorted(rows, key=lambda r: r[0]))
    return TableExport(out.getvalue(), issues)
