"""The report's files: Bulk Data NDJSON read back by type, the tables written as CSV with a
Frictionless Data Package descriptor (the codebook as Table Schema field descriptions).

https://hl7.org/fhir/uv/bulkdata/STU2/export.html#response---complete-status,
https://specs.frictionlessdata.io/data-package/, https://specs.frictionlessdata.io/table-schema/
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from fhir_bridge.report.tables import Source, Tables

# FHIR types of view columns -> Table Schema field types (others are strings)
FIELD_TYPES = {
    "integer": "integer",
    "decimal": "number",
    "boolean": "boolean",
    "date": "date",
    "dateTime": "datetime",
}


def ndjson_source(folder: Path) -> Source:
    """The resources of a downloaded Bulk Data export in `folder` (files named as their URLs
    end, beside manifest.json), type by type; error files are not read."""
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    files: dict[str, list[Path]] = {}
    for entry in manifest.get("output", []):
        files.setdefault(str(entry["type"]), []).append(folder / str(entry["url"]).rsplit("/")[-1])

    def resources(resource_type: str) -> Iterator[dict[str, Any]]:
        for path in files.get(resource_type, []):
            with path.open("rb") as lines:
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)

    return resources


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_tables(tables: Tables, out: Path) -> list[Path]:
    """Each table as `{name}.csv` (UTF-8, header row, empty cell = no value) and
    datapackage.json describing them; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    resources = []
    for name, rows in tables.rows.items():
        columns = tables.codebook[name]
        path = out / f"{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow([c.name for c in columns])
            for row in rows:
                writer.writerow([_cell(row[c.name]) for c in columns])
        written.append(path)
        fields = [
            {
                "name": c.name,
                "type": FIELD_TYPES.get(c.type, "string"),
                "description": c.description,
            }
            for c in columns
        ]
        resources.append(
            {
                "name": name.replace("_", "-"),
                "path": path.name,
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "description": tables.descriptions[name],
                "schema": {"fields": fields, "missingValues": [""]},
            }
        )
    package = {
        "name": "trial-research-views",
        "title": "Research views of the trial (pseudonymised)",
        "description": "Tables of the SQL on FHIR ViewDefinitions in mappings/views run over "
        "the research view of the trial, with the columns computed after the views.",
        "profile": "tabular-data-package",
        "resources": resources,
    }
    descriptor = out / "datapackage.json"
    descriptor.write_bytes(orjson.dumps(package, option=orjson.OPT_INDENT_2))
    return [*written, descriptor]
