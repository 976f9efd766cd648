"""The report's files: Bulk Data NDJSON read back by type, the tables written as CSV or Parquet
with a Frictionless Data Package descriptor (the codebook as Table Schema fields).

https://hl7.org/fhir/uv/bulkdata/STU2/export.html#response---complete-status,
https://specs.frictionlessdata.io/data-package/, https://specs.frictionlessdata.io/table-schema/
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import orjson

from fhir_bridge.domain.spreadsheet import safe_cell
from fhir_bridge.report.codebook import field
from fhir_bridge.report.tables import Row, Source, Tables

Progress = Callable[[int, int, str], None]  # (done, total, what comes next)
REPORT_PACKAGE = {
    "name": "trial-research-views",
    "title": "Research views of the trial (pseudonymised)",
    "description": "Tables of the SQL on FHIR ViewDefinitions in mappings/views run over "
    "the research view of the trial, with the columns computed after the views.",
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
    return safe_cell(value) if isinstance(value, str) else value


def _write_csv(path: Path, rows: list[Row], names: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_cell(row[name]) for name in names])


def write_tables(
    tables: Tables,
    out: Path,
    file_format: Literal["csv", "parquet"] = "csv",
    package: Mapping[str, str] = REPORT_PACKAGE,
    progress: Progress | None = None,
) -> list[Path]:
    """Each table as `{name}.csv` (UTF-8, header row, empty cell = no value) or
    `{name}.parquet`, and datapackage.json describing them (`package`: its name, title and
    description), the codebook entries as field titles, descriptions and categories; the
    paths written. `progress(done, total, table)` is called before each table."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    resources = []
    for n, (name, rows) in enumerate(tables.rows.items()):
        if progress is not None:
            progress(n, len(tables.rows), name)
        fields = [field(column, tables.values) for column in tables.codebook[name]]
        path = out / f"{name}.{file_format}"
        if file_format == "parquet":
            from fhir_bridge.report.parquet import write_parquet

            write_parquet(path, rows, fields)
            kind = {"format": "parquet", "mediatype": "application/vnd.apache.parquet"}
        else:
            _write_csv(path, rows, [f["name"] for f in fields])
            kind = {"format": "csv", "mediatype": "text/csv", "encoding": "utf-8"}
        written.append(path)
        resources.append(
            {
                "name": name.replace("_", "-"),
                "path": path.name,
                "profile": "tabular-data-resource",
                **kind,
                "description": tables.descriptions[name],
                "schema": {"fields": fields, "missingValues": [""]},
            }
        )
    descriptor = out / "datapackage.json"
    descriptor.write_bytes(
        orjson.dumps(
            {**package, "profile": "tabular-data-package", "resources": resources},
            option=orjson.OPT_INDENT_2,
        )
    )
    if progress is not None:
        progress(len(tables.rows), len(tables.rows), descriptor.name)
    return [*written, descriptor]
