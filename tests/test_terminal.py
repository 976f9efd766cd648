"""Escaping of what the command line writes."""

from __future__ import annotations

import io

from fhir_bridge.terminal import EscapedStream, carriage_return, printable


def test_controls_are_escaped_and_newlines_kept() -> None:
    assert printable("a\x1b[31mb\tc\rd\x07\x7f\x9b\n") == "a\\x1b[31mb\\tc\\rd\\x07\\x7f\\x9b\n"


def test_text_without_controls_is_unchanged() -> None:
    assert printable("Observation.status: 'bogus' – ÆØÅ \\ /x") == (
        "Observation.status: 'bogus' – ÆØÅ \\ /x"
    )


def test_escaped_stream_escapes_writes_but_not_the_cli_carriage_return() -> None:
    raw = io.StringIO()
    stream = EscapedStream(raw)
    carriage_return(stream)  # type: ignore[arg-type]
    print("key\x1b[2K", file=stream)
    assert raw.getvalue() == "\rkey\\x1b[2K\n"


def test_escaped_stream_tells_writers_it_is_no_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not EscapedStream(Terminal()).isatty()
