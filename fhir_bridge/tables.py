"""The import-table and export-table commands' work against a FHIR server: participants
resolved by study subject id, the whole file checked before anything is written, one
transaction per participant, and the table read back in one pass over the server's data."""

from __future__ import annotations

import itertools
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from fhir_bridge.bulk_client import BulkExportClient
from fhir_bridge.client import FHIRClient
from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import FHIRBridgeError, InvalidRequestError, MappingError
from fhir_bridge.mapping.columns import VisitRow, read_table
from fhir_bridge.mapping.protocol import research_study, study_identifier
from fhir_bridge.mapping.spec import split_code
from fhir_bridge.mapping.subjects import SUBJECT_SYSTEM
from fhir_bridge.mapping.table_export import TableExport, bundle_to_table
from fhir_bridge.mapping.table_import import Participant, Write, enrolment, plan
from fhir_bridge.report.files import ndjson_source

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

Progress = Callable[[int, int, str], None]  # (done, total, what)
ACTIONS = ("created", "updated", "unchanged", "refused")
TABLE_TYPES = ("ResearchSubject", "Encounter", "Observation")  # what export-table reads
_LOOKUP_CHUNK = 40  # study ids per ResearchSubject search: keeps the URL short
_ENTRY = re.compile(r"^Bundle\.entry\[(\d+)\]")


@dataclass
class ImportResult:
    """Counts by resource type and action, and the refusals, each naming its file lines."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    refused: list[Issue] = field(default_factory=list)

    def add(self, resource_type: str, action: str) -> None:
        self.counts.setdefault(resource_type, Counter())[action] += 1


class TableWriteError(Exception):
    """A write failed part-way: the message says which file lines are stored and which not."""


def line_ranges(lines: list[int]) -> str:
    """[2, 3, 4, 9] → "2-4, 9"."""
    parts: list[str] = []
    for line in sorted(set(lines)):
        if parts and line == int(parts[-1].rsplit("-", 1)[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{line}"
        else:
            parts.append(str(line))
    return ", ".join(parts)


def _participants(
    client: FHIRClient, subjects: list[str], progress: Progress
) -> tuple[dict[str, Participant], list[str], list[Issue]]:
    """The enrolled participants among `subjects` by study subject id, with their visit
    Encounters and score Observations; the ids nobody is enrolled under; and an issue for
    each id whose enrolment is not one ResearchSubject naming a Patient and the study."""
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(subjects), _LOOKUP_CHUNK):
        chunk = subjects[start : start + _LOOKUP_CHUNK]
        ids = ",".join(f"{SUBJECT_SYSTEM}|{s}" for s in chunk)
        for subject in client.search_all("ResearchSubject", {"identifier": ids}):
            for ident in subject.get("identifier", []):
                if ident.get("system") == SUBJECT_SYSTEM:
                    found.setdefault(str(ident.get("value")), []).append(subject)
    participants: dict[str, Participant] = {}
    unknown: list[str] = []
    issues: list[Issue] = []
    for n, subject_id in enumerate(subjects):
        progress(n, len(subjects), f"reading {subject_id}")
        records = found.get(subject_id, [])
        if len(records) > 1:
            ids = ", ".join(f"ResearchSubject/{r['id']}" for r in records)
            issues.append(
                Issue("error", "multiple-matches", f"{subject_id} is enrolled twice ({ids})")
            )
            continue
        if not records:
            unknown.append(subject_id)
            continue
        patient = records[0].get("individual", {}).get("reference")
        study = records[0].get("study", {}).get("reference")
        if not isinstance(patient, str) or not isinstance(study, str):
            text = f"ResearchSubject/{records[0]['id']} ({subject_id}) names no Patient or study"
            issues.append(Issue("error", "required", text))
            continue
        participant = Participant(subject_id, patient, study)
        participant.encounters = list(client.search_all("Encounter", {"subject": patient}))
        participant.observations = list(client.search_all("Observation", {"subject": patient}))
        participants[subject_id] = participant
    return participants, unknown, issues


def _study(client: FHIRClient, m: Mappings) -> str | None:
    ident = study_identifier(m)
    query = {"identifier": f"{ident['system']}|{ident['value']}"}
    found = list(client.search_all("ResearchStudy", query))
    return f"ResearchStudy/{found[0]['id']}" if found else None


def import_table(
    client: FHIRClient,
    csv_text: str,
    map_name: str,
    m: Mappings,
    enrol: bool = False,
    progress: Progress = lambda done, total, what: None,
) -> ImportResult:
    """Check the whole file, then write it participant by participant, each in a transaction.

    Unknown study subject ids are refused unless `enrol`: each is then enrolled (Patient,
    Consent and ResearchSubject) in its first transaction. Nothing is written while the
    file has an error. A participant the server refuses (4xx) is counted as refused and the
    others go on; a failed write (server error, connection lost) stops with TableWriteError
    naming the lines stored and not stored: running the same import again finishes the job.
    """
    rows = read_table(csv_text, map_name, m)
    by_subject: dict[str, list[VisitRow]] = {}
    for row in rows:
        by_subject.setdefault(row.subject, []).append(row)
    subjects = list(by_subject)
    participants, unknown, issues = _participants(client, subjects, progress)
    cmap = m.column_map(map_name)
    if unknown and not enrol:
        issues += [
            Issue(
                "error",
                "not-found",
                f"{s} is not enrolled in the study (no ResearchSubject has this study subject "
                "id); use --enrol to enrol new participants",
                f"line {by_subject[s][0].line}, column {cmap.subject_column}",
            )
            for s in unknown
        ]
    planned: dict[str, list[Write]] = {}
    for subject_id, participant in participants.items():
        writes, problems = plan(by_subject[subject_id], participant, m)
        planned[subject_id] = writes
        issues += problems
    if issues:
        raise MappingError(issues=issues)
    study = _study(client, m) if unknown else None
    result = ImportResult()
    if unknown and study is None:
        created = client.post_bundle(_transaction([_study_entry(m)]))
        study = "/".join(str(created["entry"][0]["fullUrl"]).split("/")[-2:])
        result.add("ResearchStudy", "created")
    for subject_id in unknown:
        assert study is not None
        patient, writes = enrolment(subject_id, by_subject[subject_id][0].line, study)
        participant = Participant(subject_id, patient, study)
        more, problems = plan(by_subject[subject_id], participant, m)
        assert not problems  # nothing on the server to disagree with
        planned[subject_id] = writes + more
    stored: list[int] = []
    for n, subject_id in enumerate(subjects):
        progress(n, len(subjects), f"writing {subject_id}")
        writes = planned[subject_id]
        entries = [w for w in writes if w.entry is not None]
        refused = False
        if entries:
            try:
                client.post_bundle(_transaction([w.entry for w in entries if w.entry]))
            except InvalidRequestError as refusal:
                result.refused += _at_lines(refusal.issues, entries, subject_id)
                for w in entries:
                    result.add(w.resource_type, "refused")
                writes = [w for w in writes if w.entry is None]
                refused = True
            except (FHIRBridgeError, httpx.HTTPError) as failed:
                rest = [r.line for s in subjects[n:] for r in by_subject[s]]
                raise TableWriteError(
                    f"writing {subject_id} failed ({_reason(failed)}). Stored: lines "
                    f"{line_ranges(stored) or 'none'}; not stored: lines {line_ranges(rest)}. "
                    "Run the same import again to finish: stored rows are not written twice"
                ) from failed
        for w in writes:
            result.add(w.resource_type, w.action)
        if not refused:
            stored += [r.line for r in by_subject[subject_id]]
    progress(len(subjects), len(subjects), "done")
    return result


def _reason(error: Exception) -> str:
    if isinstance(error, FHIRBridgeError) and error.issues:
        return error.issues[0].diagnostics or type(error).__name__
    return str(error) or type(error).__name__


def _study_entry(m: Mappings) -> dict[str, Any]:
    study = research_study(m)
    ident = study_identifier(m)
    return {
        "resource": study,
        "request": {
            "method": "POST",
            "url": "ResearchStudy",
            "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
        },
    }


def _transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _at_lines(issues: list[Issue], entries: list[Write], subject_id: str) -> list[Issue]:
    """The server's issues of a refused transaction, located by file line: the client knows
    its file, not the Bundle it never sees."""
    located = []
    for issue in issues:
        match = _ENTRY.match(issue.expression or "")
        if match and int(match.group(1)) < len(entries):
            write = entries[int(match.group(1))]
            where = f"line {write.line} ({write.resource_type})"
        else:
            where = f"lines {line_ranges([w.line for w in entries])} ({subject_id})"
        located.append(Issue(issue.severity, issue.code, issue.diagnostics, where))
    return located


def export_table(
    server: str,
    map_name: str,
    m: Mappings,
    timeout: float,
    exporting: Callable[[str], None] = lambda status: None,
    progress: Progress = lambda done, total, what: None,
    auth: httpx.Auth | None = None,
) -> TableExport:
    """The server's visit scores as CSV, from one Bulk Data export of the ResearchSubjects,
    Encounters and the score Observations of the map's instruments: the server streams them
    as stored, and the table is built in one pass (`exporting(status)` while the export runs,
    `progress` per file downloaded).
    https://hl7.org/fhir/uv/bulkdata/STU2/export.html"""
    cmap = m.column_map(map_name)
    codes = ",".join(
        "|".join(split_code(m.instrument(entry.instrument).total.code))
        for entry in cmap.instruments
    )
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("_type", ",".join(TABLE_TYPES)),
        ("_typeFilter", f"Observation?code={codes}"),
    ]
    with BulkExportClient(server, auth=auth) as client, tempfile.TemporaryDirectory() as folder:
        client.export("$export", params, Path(folder), timeout, exporting, progress)
        source = ndjson_source(Path(folder))
        return bundle_to_table(
            itertools.chain.from_iterable(source(kind) for kind in TABLE_TYPES), map_name, m
        )
