"""Cells of every CSV the project writes, made safe to open in a spreadsheet (CSV injection).

A cell starting with `=`, `+`, `-`, `@`, tab or carriage return is read by spreadsheet
programs as a formula, which can run commands or send data away; such a text cell gets a
leading single quote, which the spreadsheet shows as text.
https://owasp.org/www-community/attacks/CSV_Injection
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A number such as -3, +2.5 or -1e3 is read as a number, not a formula: it stays as it is, so
# that negative values keep their meaning. Only text cells are neutralised.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_cell(text: str) -> str:
    """`text` as a spreadsheet shows it literally: formula-like text gets a leading `'`."""
    if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return f"'{text}"
    return text
