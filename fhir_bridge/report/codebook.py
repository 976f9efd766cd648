"""The codebook: a row per column of every table (label, type, allowed values with their
meanings, unit, source, the FHIR path it came from), and the same entry as the column's Table
Schema field in datapackage.json.

https://specs.frictionlessdata.io/table-schema/ (title, description, constraints),
https://datapackage.org/standard/table-schema/#categories (the values with their labels)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir_bridge.report.columns import Column
from fhir_bridge.report.tables import Row, Tables
from fhir_bridge.report.values import ValueSet

CODEBOOK = "codebook"
DESCRIPTION = (
    "Codebook: one row per column of every other table of the package, with its label, type, "
    "allowed values and their meanings, unit, source and the FHIR path it came from."
)
# FHIR types of view columns -> Table Schema field types (others are strings)
FIELD_TYPES = {
    "integer": "integer",
    "decimal": "number",
    "boolean": "boolean",
    "date": "date",
    "dateTime": "datetime",
}
STEP = "Python: fhir_bridge/report/codebook.py"


def _column(name: str, label: str, description: str) -> Column:
    return Column(name, "string", description, True, label, source=STEP)


COLUMNS = (
    _column("table", "Table", "The table the column is in (its file name without extension)."),
    _column("variable", "Variable", "Column name, as in the table's header."),
    _column("label", "Label", "Short label of the column."),
    _column("type", "Type", "Table Schema type of the values (string, integer, number, ...)."),
    _column("fhir_type", "FHIR type", "FHIR data type the values have in the resources."),
    _column(
        "values",
        "Allowed values",
        "The values the column holds with their meanings (`code = meaning; ...`), or the range "
        "of a score (`min..max`); empty where not enumerable.",
    ),
    _column("unit", "Unit", "UCUM unit of the values (d: days, mg, {score}); empty if none."),
    _column(
        "source",
        "Source",
        "The ViewDefinition the column comes from (mappings/views), or the Python step that "
        "computes it after the views.",
    ),
    _column(
        "fhir_path",
        "FHIR path",
        "FHIRPath from the resource the value is read by (the view's path, its constants "
        "written out); for a computed column, the elements it is computed from.",
    ),
    _column("description", "Description", "What the column holds and how it is derived."),
)


def field_type(column: Column) -> str:
    return FIELD_TYPES.get(column.type, "string")


def allowed(column: Column, values: Mapping[str, ValueSet]) -> str:
    if column.values is not None and column.values in values:
        return values[column.values].text()
    if column.minimum is not None and column.maximum is not None:
        return f"{column.minimum}..{column.maximum}"
    return ""


def codebook_rows(tables: Tables) -> list[Row]:
    """A row per column of every table but the codebook itself."""
    return [
        {
            "table": name,
            "variable": column.name,
            "label": column.label,
            "type": field_type(column),
            "fhir_type": column.type,
            "values": allowed(column, tables.values) or None,
            "unit": column.unit,
            "source": column.source,
            "fhir_path": column.path or None,
            "description": column.description,
        }
        for name, columns in tables.codebook.items()
        if name != CODEBOOK
        for column in columns
    ]


def field(column: Column, values: Mapping[str, ValueSet]) -> dict[str, Any]:
    """The column's Table Schema field: the codebook entry as its title and description, the
    values as categories (closed lists and score ranges also as constraints)."""
    parts = [column.description]
    text = allowed(column, values)
    parts += [f"Values: {text}"] if text else []
    parts += [f"Unit: {column.unit}"] if column.unit else []
    parts += [f"Source: {column.source}"]
    parts += [f"FHIR path: {column.path}"] if column.path else []
    out: dict[str, Any] = {
        "name": column.name,
        "title": column.label,
        "type": field_type(column),
        "description": " ".join(p if p.endswith(".") else f"{p}." for p in parts),
    }
    constraints: dict[str, Any] = {}
    if (value_set := values.get(column.values or "")) is not None:
        out["categories"] = [
            {"value": code, "label": meaning} for code, meaning in value_set.values
        ]
        if value_set.closed:
            constraints["enum"] = [code for code, _ in value_set.values]
    if column.minimum is not None:
        constraints["minimum"] = column.minimum
    if column.maximum is not None:
        constraints["maximum"] = column.maximum
    if constraints:
        out["constraints"] = constraints
    return out
