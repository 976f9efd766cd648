"""Visit Encounters with their score Observations (and the participants' ResearchSubjects)
written as the table of a column map: the inverse of reading it (mapping/columns.py)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.spreadsheet import safe_cell
from fhir_bridge.mapping.columns import data_columns, header
from fhir_bridge.mapping.observations import component_values, total_value
from fhir_bridge.mapping.spec import SYSTEMS, InstrumentSpec
from fhir_bridge.mapping.subjects import SUBJECT_SYSTEM

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings


@dataclass(frozen=True)
class TableExport:
    """The CSV text and the bad data met on the way, each named and left out."""

    text: str
    issues: list[Issue]


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
