"""lowBoundary() and highBoundary(): the least and greatest values a decimal, date, dateTime
or time of limited precision can stand for.

https://build.fhir.org/ig/HL7/FHIRPath/#lowboundaryprecision-integer-decimal--date--datetime--time
"""

from __future__ import annotations

import calendar
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from fhir_bridge.validation.fhirpath import Env, Fn, Unsupported, compile_node, singleton

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_TIME = re.compile(r"(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?")
_DATE_TIME = re.compile(
    r"(\d{4}(?:-\d{2}(?:-\d{2})?)?)(?:T(\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?))?"
    r"(Z|[+-]\d{2}:\d{2})?"
)
# A dateTime without a time zone could be in any zone: the earliest instant it can mean is
# in the zone furthest east (+14:00), the latest in the zone furthest west (-12:00).
_EARLIEST_ZONE, _LATEST_ZONE = "+14:00", "-12:00"
DEFAULT_DECIMAL_PRECISION = 8


def boundary_function(params: list[dict[str, Any]], high: bool, type_name: str | None) -> Fn:
    """lowBoundary([precision]) or highBoundary([precision]); `type_name` as for boundary()."""
    precision = compile_node(params[0]) if params else None

    def bound(focus: list[Any], env: Env) -> list[Any]:
        digits = singleton(precision(focus, env)) if precision is not None else None
        if digits is not None and (not isinstance(digits, int) or isinstance(digits, bool)):
            raise Unsupported("a precision that is not an integer")
        out = []
        for value in focus:
            found = boundary(value, high, type_name, digits)
            if found is not None:
                out.append(found)
        return out

    return bound


def boundary(value: Any, high: bool, type_name: str | None, precision: int | None) -> Any:
    """The boundary of one value; None when it has none. `type_name` is the FHIR type when
    the path names it (`ofType(dateTime)`), else the type is read from the value's shape."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _decimal(value, high, precision)
    if not isinstance(value, str):
        return None
    if precision is not None:
        raise Unsupported("a precision for a date or time boundary")
    kind = type_name or _shape(value)
    if kind == "date":
        return _date(value, high)
    if kind in ("dateTime", "instant"):
        return _date_time(value, high)
    if kind == "time":
        return _time(value, high)
    return None


def _shape(value: str) -> str | None:
    if "T" in value:
        return "dateTime"
    if _DATE.fullmatch(value):
        return "date"
    if _TIME.fullmatch(value):
        return "time"
    return None


def _decimal(value: int | float, high: bool, precision: int | None) -> float:
    # JSON keeps the digits written; a float's shortest repr gives them back (1.0 has one).
    number = Decimal(repr(value))
    exponent = number.as_tuple().exponent
    digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    half = Decimal(5).scaleb(-digits - 1)
    bound = number + half if high else number - half
    places = DEFAULT_DECIMAL_PRECISION if precision is None else precision
    if places < 0:
        raise Unsupported("a negative precision")
    rounding = ROUND_CEILING if high else ROUND_FLOOR
    return float(bound.quantize(Decimal(1).scaleb(-places), rounding=rounding))


def _date(value: str, high: bool) -> str | None:
    found = _DATE.fullmatch(value)
    if found is None:
        return None
    year, month, day = found.groups()
    return _full_date(int(year), month, day, high)


def _full_date(year: int, month: str | None, day: str | None, high: bool) -> str:
    month_number = int(month) if month else (12 if high else 1)
    if day:
        day_number = int(day)
    else:
        day_number = calendar.monthrange(year, month_number)[1] if high else 1
    return f"{year:04d}-{month_number:02d}-{day_number:02d}"


def _time(value: str, high: bool) -> str | None:
    found = _TIME.fullmatch(value)
    if found is None:
        return None
    hour, minute, second, fraction = found.groups()
    return _full_time(hour, minute, second, fraction, high)


def _full_time(
    hour: str, minute: str | None, second: str | None, fraction: str | None, high: bool
) -> str:
    fill = "59" if high else "00"
    millis = (fraction or "")[:3].ljust(3, "9" if high else "0")
    return f"{hour}:{minute or fill}:{second or fill}.{millis}"


def _date_time(value: str, high: bool) -> str | None:
    found = _DATE_TIME.fullmatch(value)
    if found is None:
        return None
    date, time, zone = found.groups()
    date_found = _DATE.fullmatch(date)
    if date_found is None:
        return None
    year, month, day = date_found.groups()
    full_date = _full_date(int(year), month, day, high)
    if time is None:
        full_time = "23:59:59.999" if high else "00:00:00.000"
    else:
        time_found = _TIME.fullmatch(time)
        if time_found is None:
            return None
        hour, minute, second, fraction = time_found.groups()
        full_time = _full_time(hour, minute, second, fraction, high)
    if zone is None:
        zone = _LATEST_ZONE if high else _EARLIEST_ZONE
    return f"{full_date}T{full_time}{zone}"
