"""What the command line writes: control characters escaped, so that a key, a file name or a
message quoting data cannot recolour the terminal, move the cursor or overwrite an error.

C0 and C1 controls and DEL come out as Python escapes (`\\x1b`, `\\r`, `\\t`, `\\x9b`); a
newline stays a newline. The CLI's own carriage return (its progress line) goes through
`carriage_return`, which bypasses the escaping.
https://www.ecma-international.org/publications-and-standards/standards/ecma-48/
"""

from __future__ import annotations

import io
import re
from typing import TextIO

_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_NAMED = {"\t": "\\t", "\r": "\\r"}


def printable(text: str) -> str:
    """`text` with every control character but the newline written as an escape."""
    return _CONTROLS.sub(lambda m: _NAMED.get(m[0]) or f"\\x{ord(m[0]):02x}", text)


class EscapedStream(io.TextIOBase):
    """A text stream that writes `printable(text)` to the stream it wraps."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(printable(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        # Not a terminal to its writers: one that colours its output when it sees a terminal
        # (uvicorn's log) would have its colour codes printed as escapes.
        return False


def carriage_return(stream: TextIO) -> None:
    """A carriage return written as itself: the CLI redraws its progress line with it."""
    raw = stream.raw if isinstance(stream, EscapedStream) else stream
    raw.write("\r")
