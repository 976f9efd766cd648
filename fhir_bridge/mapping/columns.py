"""CSV exports of a research data-capture system (one row per participant and visit, one
column per item) to a FHIR transaction Bundle and back, as described by a column map."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING, Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import MappingError
from fhir_bridge.mapping.observations import (
    component_values,
    score_observation,
    study_extension,
    total_value,
)
from fhir_bridge.mapping.protocol import research_study, study_identifier
from fhir_bridge.mapping.questionnaires import coding
from fhir_bridge.mapping.spec import (
    CANONICAL,
    SID,
    SYSTEMS,
    ColumnMapSpec,
    InstrumentSpec,
    ItemSpec,
)

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

SUBJECT_SYSTEM = f"{SID}/study-subject"
ENCOUNTER_SYSTEM = f"{SID}/visit-encounter"
OBSERVATION_SYSTEM = f"{SID}/score-observation"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_SUBJECT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")

Column = tuple[str, InstrumentSpec, ItemSpec | None]  # item None = the total column


def data_columns(cmap: ColumnMapSpec, m: Mappings) -> list[Column]:
    """Instrument columns in order: `<prefix><linkId>` per item, then `<prefix>total`."""
    result: list[Column] = []
    for entry in cmap.instruments:
        spec = m.instrument(entry.instrument)
        for item in spec.items:
            result.append((f"{entry.prefix}{item.link_id.replace('-', '_')}", spec, item))
        result.append((f"{entry.prefix}total", spec, None))
    return result


def header(cmap: ColumnMapSpec, m: Mappings) -> list[str]:
    fixed = [cmap.subject_column, cmap.visit_column, cmap.date_column]
    return fixed + [name for name, _, _ in data_columns(cmap, m)]


def _urn(system: str, value: str) -> str:
    # Deterministic ids: importing the same file twice yields the same fullUrls.
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{system}|{value}')}"


def _entry(resource: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    return {
        "fullUrl": _urn(system, value),
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={system}|{value}",
        },
    }


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


def _row_entries(
    row: dict[str, str],
    n: int,
    cmap: ColumnMapSpec,
    m: Mappings,
    refs: dict[str, str],
    issues: list[Issue],
) -> list[dict[str, Any]]:
    subject, visit_code = row[cmap.subject_column].strip(), row[cmap.visit_column].strip()
    when = row[cmap.date_column].strip()
    before = len(issues)
    if not _SUBJECT_ID.match(subject):
        issues.append(
            Issue(
                "error",
                "value",
                f"bad subject id {subject!r}",
                f"row {n}, column {cmap.subject_column}",
            )
        )
    visit = m.visit(visit_code)
    if visit is None:
        issues.append(
            Issue(
                "error",
                "code-invalid",
                f"visit {visit_code!r} is not in the protocol",
                f"row {n}, column {cmap.visit_column}",
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
                f"row {n}, column {cmap.date_column}",
            )
        )
    values: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    seen: dict[str, InstrumentSpec] = {}
    for name, spec, item in data_columns(cmap, m):
        text = (row.get(name) or "").strip()
        if not text:
            continue
        seen[spec.id] = spec
        low, high = (item.min, item.max) if item else (spec.total.min, spec.total.max)
        value = _parse_int(text, low, high, f"row {n}, column {name}", issues)
        if value is not None and item is not None:
            values.setdefault(spec.id, {})[item.link_id] = value
        elif value is not None:
            totals[spec.id] = value
    for spec in seen.values():
        expected = spec.score(values.get(spec.id, {}))
        if spec.id in totals and expected is not None and expected != totals[spec.id]:
            column = next(name for name, s, i in data_columns(cmap, m) if s is spec and not i)
            issues.append(
                Issue(
                    "error",
                    "invariant",
                    f"{spec.name} total {totals[spec.id]} differs from the items ({expected})",
                    f"row {n}, column {column}",
                )
            )
    if len(issues) > before or visit is None:
        return []
    entries = []
    if subject not in refs:
        patient = {
            "resourceType": "Patient",
            "identifier": [{"system": SUBJECT_SYSTEM, "value": subject}],
        }
        entries.append(_entry(patient, SUBJECT_SYSTEM, subject))
        refs[subject] = entries[-1]["fullUrl"]
    key = f"{subject}/{visit_code}"
    encounter = {
        "resourceType": "Encounter",
        "meta": {"profile": [f"{CANONICAL}/StructureDefinition/visit-encounter"]},
        "extension": [study_extension(refs["study"])],
        "identifier": [{"system": ENCOUNTER_SYSTEM, "value": key}],
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [{"coding": [coding(f"visit:{visit_code}", visit.display)]}],
        "subject": {"reference": refs[subject]},
        "period": {"start": when},
    }
    entries.append(_entry(encounter, ENCOUNTER_SYSTEM, key))
    for spec in seen.values():
        obs_key = f"{key}/{spec.id}"
        obs = score_observation(
            spec,
            values.get(spec.id, {}),
            totals.get(spec.id),
            subject=refs[subject],
            effective=when,
            encounter=_urn(ENCOUNTER_SYSTEM, key),
            study=refs["study"],
            identifier={"system": OBSERVATION_SYSTEM, "value": obs_key},
        )
        entries.append(_entry(obs, OBSERVATION_SYSTEM, obs_key))
    return entries


def table_to_bundle(csv_text: str, map_name: str, m: Mappings) -> dict[str, Any]:
    """CSV → transaction Bundle of Patients, visit Encounters and score Observations.

    Every entry is a conditional create on its identifier (ifNoneExist), so importing the same
    file again creates nothing. Bad cells raise MappingError naming row and column.
    https://hl7.org/fhir/R4/http.html#transaction
    """
    cmap = m.column_map(map_name)
    reader = csv.DictReader(io.StringIO(csv_text))
    known = header(cmap, m)
    fields = reader.fieldnames or []
    issues = [
        Issue("error", "structure", f"unknown column {name!r}", f"column {name}")
        for name in fields
        if name not in known
    ]
    issues += [
        Issue("error", "required", f"missing column {name!r}", f"column {name}")
        for name in known[:3]
        if name not in fields
    ]
    if issues:
        raise MappingError(issues=issues)
    study = research_study(m)
    del study["id"]
    ident = study_identifier(m)
    study_entry = _entry(study, ident["system"], ident["value"])
    refs = {"study": study_entry["fullUrl"]}
    entries = [study_entry]
    seen_rows: dict[tuple[str, str], int] = {}
    for n, row in enumerate(reader, 1):
        key = (row.get(cmap.subject_column) or "", row.get(cmap.visit_column) or "")
        if key in seen_rows:
            issues.append(
                Issue(
                    "error",
                    "business-rule",
                    f"duplicate participant and visit (row {seen_rows[key]})",
                    f"row {n}, column {cmap.visit_column}",
                )
            )
            continue
        seen_rows[key] = n
        entries += _row_entries(row, n, cmap, m, refs, issues)
    if issues:
        raise MappingError(issues=issues)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _flatten(resources: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Resources keyed by every way a reference may name them (fullUrl, Type/id)."""
    index: dict[str, dict[str, Any]] = {}
    ordered: list[tuple[str | None, dict[str, Any]]] = []
    for resource in resources:
        if resource.get("resourceType") == "Bundle":
            ordered += [
                (e.get("fullUrl"), e["resource"])
                for e in resource.get("entry", [])
                if isinstance(e.get("resource"), dict)
            ]
        else:
            ordered.append((None, resource))
    for position, (full_url, resource) in enumerate(ordered):
        keys = [full_url] if full_url else []
        if resource.get("id"):
            keys.append(f"{resource['resourceType']}/{resource['id']}")
        for key in keys or [f"#{position}"]:
            index[key] = resource
    return index


def _subject_id(patient_ref: str, index: dict[str, dict[str, Any]]) -> str | None:
    candidates = [
        r
        for r in index.values()
        if r.get("resourceType") == "ResearchSubject"
        and r.get("individual", {}).get("reference") == patient_ref
    ]
    patient = index.get(patient_ref)
    if patient is not None:
        candidates.append(patient)
    for resource in candidates:
        for ident in resource.get("identifier", []):
            if ident.get("system") == SUBJECT_SYSTEM and ident.get("value"):
                return str(ident["value"])
    return None


def bundle_to_table(resources: Iterable[dict[str, Any]], map_name: str, m: Mappings) -> str:
    """Visit Encounters with their score Observations → CSV (the inverse of table_to_bundle).

    Accepts resources and/or Bundles; one row per visit Encounter, ordered by study subject,
    visit date and protocol visit order, so the table does not depend on server order.
    """
    cmap = m.column_map(map_name)
    index = _flatten(resources)
    unique = list({id(r): r for r in index.values()}.values())
    by_encounter: dict[str, list[dict[str, Any]]] = {}
    for obs in unique:
        if obs.get("resourceType") == "Observation":
            ref = obs.get("encounter", {}).get("reference")
            if isinstance(ref, str):
                by_encounter.setdefault(ref, []).append(obs)
    visit_order = {visit.code: n for n, visit in enumerate(m.protocol.visits)}
    columns = data_columns(cmap, m)
    names_of = header(cmap, m)
    rows: list[tuple[tuple[str, str, int], list[str]]] = []
    for encounter in unique:
        if encounter.get("resourceType") != "Encounter":
            continue
        visit = next(
            (
                c["code"]
                for t in encounter.get("type", [])
                for c in t.get("coding", [])
                if c.get("system") == SYSTEMS["visit"]
            ),
            None,
        )
        if visit is None:
            continue
        key = next(k for k, r in index.items() if r is encounter)
        names = {k for k, r in index.items() if r is encounter}
        subject_ref = encounter.get("subject", {}).get("reference", "")
        subject = _subject_id(subject_ref, index)
        if subject is None:
            raise MappingError(
                f"no study subject id for {subject_ref!r}", expression=f"Encounter {key}"
            )
        date = str(encounter.get("period", {}).get("start", ""))[:10]
        cells = {cmap.subject_column: subject, cmap.visit_column: visit, cmap.date_column: date}
        filled: set[str] = set()
        for obs in (o for name in names for o in by_encounter.get(name, [])):
            spec = next(
                (
                    m.instrument_for_total(c.get("system"), c.get("code"))
                    for c in obs.get("code", {}).get("coding", [])
                    if m.instrument_for_total(c.get("system"), c.get("code"))
                ),
                None,
            )
            if spec is None or spec.id not in {e.instrument for e in cmap.instruments}:
                continue
            if spec.id in filled:
                raise MappingError(
                    f"two {spec.name} Observations for one visit", expression=f"Encounter {key}"
                )
            filled.add(spec.id)
            values, total = component_values(spec, obs), total_value(obs)
            for name, s, item in columns:
                if s is spec:
                    value = total if item is None else values.get(item.link_id)
                    cells[name] = "" if value is None else str(value)
        order = (subject, date, visit_order.get(visit, len(visit_order)))
        rows.append((order, [cells.get(name, "") for name in names_of]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names_of)
    writer.writerows(row for _, row in sorted(rows, key=lambda r: r[0]))
    return out.getvalue()
