"""Tables as Parquet files, each column typed from its Table Schema field: integers (int64),
numbers (double), booleans, dates (date32, where every value is a full date) and text.

Date-times stay ISO 8601 text with their UTC offset, as in the CSV: a timestamp type keeps
the instant but not the local date, and study days count local dates.
https://parquet.apache.org/docs/file-format/types/
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _dates(values: list[Any]) -> list[date | None] | None:
    try:
        return [None if v is None else date.fromisoformat(str(v)) for v in values]
    except ValueError:  # a partial date, or one with a time
        return None


def _array(field_type: str, values: list[Any]) -> Any:
    if field_type == "integer":
        return pa.array(values, pa.int64())
    if field_type == "number":
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if field_type == "boolean":
        return pa.array(values, pa.bool_())
    if field_type == "date" and (dates := _dates(values)) is not None:
        return pa.array(dates, pa.date32())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def write_parquet(
    path: Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[Mapping[str, Any]]
) -> None:
    """`rows` as a Parquet file of the columns of `fields` (Table Schema fields), in order."""
    table = pa.table(
        {f["name"]: _array(f["type"], [row[f["name"]] for row in rows]) for f in fields}
    )
    pq.write_table(table, path)
