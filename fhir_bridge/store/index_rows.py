"""Rows of the search index tables: what a resource contributes to each search parameter.

https://hl7.org/fhir/R4/search.html#ptypes — one row type per index table.
Dates and number ranges are stored as [low, high] so that prefixes and precision
(`date=2025-03` is the whole month) become range comparisons in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TokenRow:
    param: str
    system: str | None
    code: str | None
    text: str | None = None  # normalised display/text, for :text


@dataclass(frozen=True, slots=True)
class StringRow:
    param: str
    value: str  # normalised: case-folded, accents stripped


@dataclass(frozen=True, slots=True)
class DateRow:
    param: str
    low: float  # epoch seconds, inclusive
    high: float  # epoch seconds, exclusive end of the precision / period


@dataclass(frozen=True, slots=True)
class NumberRow:
    """number and quantity parameters; quantity rows carry system and code (unit)."""

    param: str
    value: float
    low: float
    high: float  # implicit range from significant digits
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceRow:
    param: str
    target_type: str | None
    target_id: str | None
    url: str | None = None  # absolute or canonical reference as written


@dataclass(frozen=True, slots=True)
class URIRow:
    param: str
    value: str


@dataclass(slots=True)
class IndexRows:
    tokens: list[TokenRow] = field(default_factory=list)
    strings: list[StringRow] = field(default_factory=list)
    dates: list[DateRow] = field(default_factory=list)
    numbers: list[NumberRow] = field(default_factory=list)
    references: list[ReferenceRow] = field(default_factory=list)
    uris: list[URIRow] = field(default_factory=list)
