"""Search value rules shared by index extraction and query parsing: dates as ranges, numbers
with their implicit precision, strings normalised for case- and accent-insensitive matching.

https://hl7.org/fhir/R4/search.html — dates are ranges in epoch seconds [low, high); values
without a zone are read as UTC.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache

MIN_TIME = -62135596800.0  # 0001-01-01T00:00:00Z: open start of a Period
MAX_TIME = 253402300800.0  # 10000-01-01T00:00:00Z: open end of a Period

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


# The longest text an index column keeps whole. PostgreSQL refuses B-tree entries over 2,704
# bytes (a character takes up to 4, a token entry holds system and code). A longer value is
# kept as its first characters and a hash of the whole: equality stays exact, while a prefix
# search sees only the first characters, as with HAPI's 200-character index columns.
INDEXED_CHARS = 200
_KEPT_CHARS = INDEXED_CHARS - 17  # room for "#" and 16 hex digits


def indexed(text: str | None) -> str | None:
    """`text` as index columns store it (see INDEXED_CHARS); None stays None."""
    if text is None or len(text) <= INDEXED_CHARS:
        return text
    whole = text.encode("utf-8", "surrogatepass")
    return f"{text[:_KEPT_CHARS]}#{hashlib.blake2b(whole, digest_size=8).hexdigest()}"


def indexed_prefix(text: str) -> str:
    """The part of a starts-with search value that stored index columns can match."""
    return text if len(text) <= _KEPT_CHARS else text[:_KEPT_CHARS]


@lru_cache(maxsize=65536)
def normalize_string(value: str) -> str:
    """Case- and accent-insensitive form used for string search (index and query alike).

    Cached: displays and item texts repeat across every resource of an instrument."""
    if value.isascii():
        return value.casefold().strip()
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


def date_range(value: str) -> tuple[float, float]:
    """[low, high) in epoch seconds of a FHIR date/dateTime/instant at its precision.

    https://hl7.org/fhir/R4/search.html#date — `2025-03` is the whole month.
    Raises ValueError for text that is not a date.
    """
    match = _DATE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"not a date: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    y = int(year)
    if month is None:
        return _epoch(y, 1, 1), _epoch(y + 1, 1, 1)
    m = int(month)
    if day is None:
        next_year, next_month = (y + 1, 1) if m == 12 else (y, m + 1)
        _epoch(y, m, 1)  # validates the month
        return _epoch(y, m, 1), _epoch(next_year, next_month, 1)
    d = int(day)
    if hour is None:
        low = _epoch(y, m, d)
        return low, low + 86400.0
    offset = 0.0
    if zone and zone != "Z":
        # R4 dateTime: offsets -14:00..+14:00 (https://hl7.org/fhir/R4/datatypes.html#dateTime)
        if int(zone[1:3]) > 14 or int(zone[4:6]) > 59:
            raise ValueError("time zone offset out of range")
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600.0 + int(zone[4:6]) * 60.0)
    low = _epoch(y, m, d, int(hour), int(minute), int(second or 0)) - offset
    if second is None:
        return low, low + 60.0
    if fraction:
        return low + float(fraction), low + float(fraction) + 10.0 ** -(len(fraction) - 1)
    return low, low + 1.0


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> float:
    if year > 9999:
        return MAX_TIME
    if year < 1 or not 1 <= month <= 12:
        raise ValueError("date out of range")
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _MONTH_DAYS[month - 1] + leap:
        raise ValueError("date out of range")
    if hour > 23 or minute > 59 or sec > 60:
        raise ValueError("time out of range")
    return _days_since_1970(year, month, day) * 86400.0 + hour * 3600 + minute * 60 + sec


def _days_since_1970(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date: H. Hinnant's days_from_civil
    (https://howardhinnant.github.io/date_algorithms.html), integer arithmetic only: the
    index rows of every date go through here."""
    y = year - (month <= 2)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


_SHORT_INTEGER = re.compile(r"-?[0-9]{1,15}")


def number_range(text: str) -> tuple[float, float, float]:
    """(value, low, high): the implicit range of a number's significant digits.

    https://hl7.org/fhir/R4/search.html#number — `100` matches [99.5, 100.5).
    """
    if _SHORT_INTEGER.fullmatch(text):  # exact in a double, as are its bounds: no Decimal
        value = float(text)
        return value, value - 0.5, value + 0.5
    number = Decimal(text)
    value = float(number)
    if not number.is_finite() or not math.isfinite(value):  # beyond a double: 1e400
        raise InvalidOperation(text)
    half = Decimal(5).scaleb(number.as_tuple().exponent - 1)  # type: ignore[operator]
    return value, float(number - half), float(number + half)
