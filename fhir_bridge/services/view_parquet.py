"""The rows of a view as a Parquet file that streams: row groups of at most ROW_GROUP rows, each
sent as soon as it is written, then the footer. https://parquet.apache.org/docs/file-format/

Columns are typed from the view's column types: integers int64, decimals double, booleans
boolean; every other column is text as the CSV writes it (dates and date-times keep their
precision and offset, lists and objects are JSON text).
https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#column-types
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fhir_bridge.views.columns import Column

ROW_GROUP = 50_000  # rows held at once: the bound of the writer's memory
_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})


class _Drain:
    """The file-like sink of the writer: bytes collect here until the encoder sends them."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def taken(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def _kind(column: Column, text: Callable[[Any], str]) -> tuple[pa.DataType, Callable[[Any], Any]]:
    """The Parquet type of a column and the conversion of its non-null values."""
    if not column.collection and column.type in _INTEGERS:
        return pa.int64(), int
    if not column.collection and column.type == "decimal":
        return pa.float64(), float
    if not column.collection and column.type == "boolean":
        return pa.bool_(), bool
    return pa.string(), text


def parquet(
    columns: Sequence[Column], rows: Iterable[Sequence[Any]], text: Callable[[Any], str]
) -> Iterator[bytes]:
    """`rows` (tuples in the order of `columns`) as the bytes of a Parquet file, a row group
    at a time; `text` writes a value of a text column."""
    kinds = [_kind(column, text) for column in columns]
    schema = pa.schema([(c.name, kind) for c, (kind, _) in zip(columns, kinds, strict=True)])
    sink = _Drain()
    with pq.ParquetWriter(sink, schema) as writer:
        held: list[list[Any]] = [[] for _ in columns]
        count = 0
        for row in rows:
            for values, value in zip(held, row, strict=True):
                values.append(value)
            count += 1
            if count == ROW_GROUP:
                writer.write_table(_table(schema, kinds, held))
                held, count = [[] for _ in columns], 0
                yield sink.taken()
        if count:
            writer.write_table(_table(schema, kinds, held))
    yield sink.taken()


def _table(
    schema: pa.Schema,
    kinds: Sequence[tuple[pa.DataType, Callable[[Any], Any]]],
    held: Sequence[list[Any]],
) -> pa.Table:
    arrays = [
        pa.array([None if v is None else convert(v) for v in values], kind)
        for (kind, convert), values in zip(kinds, held, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
