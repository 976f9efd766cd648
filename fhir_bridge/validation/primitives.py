"""Checkers for the R4 primitive types: JSON type, then the type's regex and value range.

https://hl7.org/fhir/R4/datatypes.html#primitive and https://hl7.org/fhir/R4/json.html#primitive
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from fhir_bridge.domain.fhir_json import DecimalText
from fhir_bridge.validation.definitions import load_definitions
from fhir_bridge.validation.narrative import narrative_problem

# A checker returns None when the value is valid, else the reason.
Checker = Callable[[object], str | None]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
_BASE64 = re.compile(r"[0-9A-Za-z+/=\s]*", re.ASCII).fullmatch


def _string(value: object) -> str | None:
    if type(value) is not str:
        return f"expected a JSON string, found {_json_type(value)}"
    if not value.strip():
        return "empty or whitespace-only strings are not allowed"
    return None


def _boolean(value: object) -> str | None:
    if type(value) is not bool:
        return f"expected a JSON boolean, found {_json_type(value)}"
    return None


def _integer_checker(low: int, name: str) -> Checker:
    def check(value: object) -> str | None:
        if isinstance(value, DecimalText) and value.text == "-0":  # read as such to keep it
            return None
        if isinstance(value, DecimalText) and value.text.lstrip("-").isdigit():
            return f"{value.text} is not a valid {name}"
        if type(value) is not int:
            return f"expected a JSON integer, found {_json_type(value)}"
        if value < low or value > INT32_MAX:
            return f"{value} is not a valid {name}"
        return None

    return check


def _decimal(value: object) -> str | None:
    exact = type(value) is int or type(value) is float or isinstance(value, DecimalText)
    if not exact:
        return f"expected a JSON number, found {_json_type(value)}"
    if value != value or value in (float("inf"), float("-inf")):
        return "not a finite decimal"
    return None


def _base64(value: object) -> str | None:
    if type(value) is not str:
        return f"expected a JSON string, found {_json_type(value)}"
    digits = "".join(value.split())  # the R4 regex: one or more groups of 4, spaces between
    if not digits or len(digits) % 4 or _BASE64(value) is None:
        return "not valid base64"
    return None


def _xhtml(value: object) -> str | None:
    if type(value) is not str:
        return f"expected a JSON string, found {_json_type(value)}"
    if not value.lstrip().startswith("<div"):
        return "narrative must be an XHTML <div> element"
    if "http://www.w3.org/1999/xhtml" not in value[:300]:
        return "narrative <div> must declare the XHTML namespace"
    return narrative_problem(value)


def _regex_checker(regex: str, name: str) -> Checker:
    # FHIR regexes follow XML Schema / Java: implicitly anchored, ASCII character classes.
    match = re.compile(regex, re.ASCII).fullmatch

    def check(value: object) -> str | None:
        if type(value) is not str:
            return f"expected a JSON string, found {_json_type(value)}"
        if not value or match(value) is None:
            return f"{value!r} is not a valid {name}"
        return None

    return check


def _calendar_checker(regex_check: Checker, name: str) -> Checker:
    """The regex allows 2026-02-30; a real calendar date is also required."""

    def check(value: object) -> str | None:
        msg = regex_check(value)
        if msg is None and len(value) >= 10:  # type: ignore[arg-type]
            text = str(value)
            try:
                date(int(text[:4]), int(text[5:7]), int(text[8:10]))
            except ValueError:
                return f"{value!r} is not a valid {name}: no such calendar date"
        return msg

    return check


def _id_checker(regex_check: Checker) -> Checker:
    """The R4 regex allows `.` and `..`, which a URL's path reads as a folder or its parent:
    refused, as the REST API refuses them."""

    def check(value: object) -> str | None:
        if value == "." or value == "..":
            return f"{value!r} is not a valid id: a URL would read it as a path step"
        return regex_check(value)

    return check


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def build_checkers() -> dict[str, Checker]:
    """One checker per primitive type, regexes taken from the vendored definitions."""
    regexes: dict[str, str] = load_definitions()["regex"]
    checkers: dict[str, Checker] = {
        name: _regex_checker(regex, name)
        for name, regex in regexes.items()
        if name not in ("string", "markdown", "boolean", "integer", "decimal")
    }
    for name in ("date", "dateTime", "instant"):
        checkers[name] = _calendar_checker(checkers[name], name)
    checkers["id"] = _id_checker(checkers["id"])
    checkers.update(
        string=_string,
        markdown=_string,
        boolean=_boolean,
        integer=_integer_checker(INT32_MIN, "integer"),
        positiveInt=_integer_checker(1, "positiveInt"),
        unsignedInt=_integer_checker(0, "unsignedInt"),
        decimal=_decimal,
        base64Binary=_base64,
        xhtml=_xhtml,
    )
    return checkers
