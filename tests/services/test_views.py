"""$viewdefinition-run output: made while rows stream in; an error before the response starts
is raised, one after it ends the response unfinished."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.services import views
from fhir_bridge.views import ViewDefinition

VIEW = ViewDefinition.parse(
    {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
)


def endless() -> Iterator[tuple[Any, ...]]:
    for n in itertools.count():
        yield (f"p{n}",)


@pytest.mark.parametrize("output", ["json", "ndjson", "csv"])
def test_output_streams_in_chunks_from_endless_rows(output: str) -> None:
    request = views.RunRequest(VIEW, "ViewDefinition", format=output)
    chunks = views.encoded(request, endless())
    first = next(chunks)
    assert views.CHUNK <= len(first) < 2 * views.CHUNK


def test_started_makes_only_the_lookahead() -> None:
    consumed = 0

    def counted() -> Iterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1
            yield b"x" * 1024

    chunks = views.started(counted())
    assert consumed == views.LOOKAHEAD // 1024
    assert len(next(chunks)) == 1024


def failing(after: int) -> Iterator[bytes]:
    yield b"x" * after
    raise InvalidRequestError("ViewDefinition.select[0].column[0].path: 2 values")


def test_an_error_within_the_lookahead_is_raised_before_the_response() -> None:
    with pytest.raises(InvalidRequestError):
        views.started(failing(10))


def test_an_error_after_the_lookahead_ends_the_output_unfinished() -> None:
    chunks = views.started(failing(views.LOOKAHEAD))
    assert next(chunks)
    with pytest.raises(views.UnfinishedError):
        next(chunks)


def test_csv_output_neutralises_formula_cells_but_not_numbers() -> None:
    request = views.RunRequest(VIEW, "ViewDefinition", format="csv")
    rows = [("=1+1",), ("-3",), (-3,)]
    text = b"".join(views.encoded(request, iter(rows))).decode()
    assert text.splitlines() == ["id", "'=1+1", "-3", "-3"]
