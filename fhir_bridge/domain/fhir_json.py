"""FHIR JSON read and written as sent: a repeated key is refused, a decimal keeps its text.

https://hl7.org/fhir/R4/json.html — R4 decimals are not IEEE floats: `1.50` has three
significant digits and stays `1.50`, `1e2` stays `1e2`. orjson reads every number as a float
(or an integer), and writes a float's shortest text. So JSON text is read by orjson and
written again (the too-deep check writes it anyway); when the numbers and the keys of both
texts are the same (`_same_numbers_and_keys`), what orjson read is what was sent. Only
otherwise is the text read again by the standard library, which hands each number's text to
`_number`: a number whose text a float would not give back becomes a DecimalText, a float
that remembers its text, and `dumps` writes that text (orjson.Fragment).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from fhir_bridge.errors import InvalidRequestError

# The bytes of numbers and of the structure around them; `"` keeps strings aligned.
_NUMERIC = b'0123456789.eE+-,:[]{}"'
_NOT_NUMERIC = bytes(b for b in range(256) if b not in _NUMERIC)
_INT64 = (-(2**63), 2**64 - 1)  # what orjson writes as an integer
_ESCAPE = re.compile(rb"\\(?:u[0-9a-fA-F]{4}|.)", re.DOTALL)  # `\n`, `\u00e9`, `\\`...


class DecimalText(float):
    """A JSON number whose text a float would not give back (`1.50`, `1e2`,
    `1.0000000000000001`, `123456789012345678901234567890`): the nearest float for
    arithmetic and comparison, the text for writing and for the precision of searches."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> DecimalText:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __reduce__(self) -> tuple[type[DecimalText], tuple[str]]:
        return DecimalText, (self.text,)

    def __repr__(self) -> str:
        return self.text


def number_text(number: Any) -> str:
    """The text of a JSON number as it was sent (a float's shortest text otherwise)."""
    if isinstance(number, DecimalText):
        return number.text
    return repr(number) if isinstance(number, float) else str(number)


def _fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, DecimalText):
        return orjson.Fragment(value.text)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """JSON text of `value`, each DecimalText as its text; TypeError for what JSON cannot hold
    (and for nesting beyond 255 levels)."""
    return orjson.dumps(value, default=_fragment)


def loads(text: bytes) -> Any:
    """`text` parsed with every number's text kept; orjson.JSONDecodeError when malformed, a
    400 naming the key when an object repeats one, TypeError when nested beyond 255 levels."""
    parsed = orjson.loads(text)
    written = orjson.dumps(parsed)  # raises TypeError beyond 255 levels: it could not be stored
    if _same_numbers_and_keys(text, written):
        return parsed
    if text.count(b":") + _spelled_colons(text) != written.count(b":"):
        _refuse_repeated_key(text)
    return json.loads(text, parse_float=_number, parse_int=_integer)


def _same_numbers_and_keys(text: bytes, written: bytes) -> bool:
    """Whether orjson's `written` text of what it read from `text` has the same numbers and
    keys. Both texts without their escapes (`\\"`, `\\u00e9`: orjson spells some otherwise)
    hold each string's other characters as sent, and orjson leaves out only whitespace and
    adds, inside strings, what an escape stood for. Less all but numbers, structure and
    quotes, the two are equal exactly when no number changed, no key was dropped and no
    escape stood for a digit or the like (that string then differs: read again). Two C
    passes (bytes.translate) instead of a walk of the parsed value, and an escape search
    where there are escapes."""
    if text.find(b"\\") >= 0:
        text = _ESCAPE.sub(b"", text)
    if written.find(b"\\") >= 0:
        written = _ESCAPE.sub(b"", written)
    return text.translate(None, _NOT_NUMERIC) == written.translate(None, _NOT_NUMERIC)


def _spelled_colons(text: bytes) -> int:
    """Colons inside strings spelled `\\u003a`: orjson writes them as `:`."""
    if text.find(b"\\") < 0:
        return 0
    unescaped = text.replace(b"\\\\", b"")  # `\\u003a` is a backslash and text
    return unescaped.count(b"\\u003a") + unescaped.count(b"\\u003A")


def _number(text: str) -> float:
    number = float(text)
    return number if orjson.dumps(number) == text.encode() else DecimalText(text)


def _integer(text: str) -> int | float:
    number = int(text)
    if _INT64[0] <= number <= _INT64[1] and text != "-0":
        return number
    return DecimalText(text)  # an integer beyond 64 bits, or -0


class _Pairs(list[tuple[str, Any]]):
    """An object's members in order, as read (repeated keys kept)."""


def _refuse_repeated_key(text: bytes) -> None:
    """Raise a 400 naming the first key an object of `text` repeats, with its path."""
    found = _repeated(json.loads(text, object_pairs_hook=_Pairs), [])
    if found is not None:
        raise InvalidRequestError(
            f"The key '{found[-1]}' appears more than once in one object",
            code="structure",
            expression=".".join(found).replace(".[", "["),
        )


def _repeated(value: Any, path: list[str]) -> list[str] | None:
    if isinstance(value, _Pairs):
        if not path:  # the root: a resource is named by its type, as FHIRPath does
            kind = next((v for k, v in value if k == "resourceType"), None)
            path = [kind if isinstance(kind, str) else "$"]
        seen: set[str] = set()
        for key, _ in value:
            if key in seen:
                return [*path, key]
            seen.add(key)
        for key, item in value:
            found = _repeated(item, [*path, key])
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _repeated(item, [*path, f"[{index}]"] if path else ["$", f"[{index}]"])
            if found is not None:
                return found
    return None
