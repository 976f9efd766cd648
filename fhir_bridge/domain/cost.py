"""The cost budget of a request: bounds on a body's shape, a search's fan-out and a patch's
output, each checked before the work it bounds starts. Over budget is a `too-costly` error
naming what was too large (https://hl7.org/fhir/R4/valueset-issue-type.html#too-costly)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_bridge.errors import InvalidRequestError, PayloadTooLargeError


@dataclass(frozen=True)
class Limits:
    """What one request may cost; a Bundle's entries share its budget."""

    # A body's shape: contained resources and references (a Bundle's added up), the items of
    # one array (Bundle.entry has max_bundle_entries) and the JSON nesting depth.
    max_contained: int = 10_000
    max_references: int = 100_000
    max_array_items: int = 10_000
    max_depth: int = 128
    # JSON Patch: operations in one patch, JSON bytes they add to the document together.
    max_patch_operations: int = 1_000
    max_patch_bytes: int = 4 * 1024 * 1024
    # Search: criteria once chains and _has are expanded, and the SQL parameters they bind
    # (SQLite allows 32,766 per statement, PostgreSQL 65,535).
    max_search_criteria: int = 64
    max_search_parameters: int = 2_000
    # Resources an _include or _revinclude adds to one page.
    max_include_results: int = 1_000
    # Resources returned by all GET entries of one batch or transaction together.
    max_bundle_get_results: int = 10_000
    # A statement running longer is cancelled (both databases).
    statement_timeout_seconds: float = 30.0


class Budget:
    """What is left of one limit that the parts of a request share: the resources that a
    Bundle's GET entries may return, each charged its most before it runs."""

    def __init__(self, limit: int, what: str) -> None:
        self.left = limit
        self.limit = limit
        self.what = what

    def spend(self, amount: int, expression: str) -> None:
        """Take `amount`; beyond the limit a 400 too-costly naming `expression`."""
        if amount > self.left:
            raise InvalidRequestError(
                f"{self.what} may return more than {self.limit} resources together",
                code="too-costly",
                expression=expression,
            )
        self.left -= amount


class _OverBudget(Exception):
    """Raised deep in the walk; each frame adds its key on the way out, so the path costs
    nothing unless the budget is exceeded."""

    def __init__(self, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.path: list[str | int] = []


def check_shape(body: Any, limits: Limits) -> None:
    """Refuse (413 too-costly, naming the element) a parsed body whose shape is over budget.

    One pass, linear in the body's size, before validation or storage. A Bundle's entries
    are counted together; the number of entries itself is bounded by max_bundle_entries."""
    if type(body) is not dict:
        return
    root = body.get("resourceType")
    try:
        _walk(body, root == "Bundle", limits)
    except _OverBudget as over:
        over.path.append(root if isinstance(root, str) else "$")
        raise PayloadTooLargeError(over.diagnostics, expression=_expression(over.path)) from None


def _walk(body: dict[str, Any], bundle: bool, limits: Limits) -> None:
    """One call per object or array and none per primitive, the limits in locals: on a
    500-entry transaction of MADRS scores 23 ms against 33-63 ms to parse it (26 ms with a
    call per element and paths kept as it went; runs on a loaded machine)."""
    max_depth, max_items = limits.max_depth, limits.max_array_items
    max_contained, max_references = limits.max_contained, limits.max_references
    containers = (dict, list)
    contained = references = 0

    def walk(value: Any, depth: int) -> None:
        nonlocal contained, references
        if depth > max_depth:
            raise _OverBudget(f"The body nests deeper than {max_depth} levels")
        if type(value) is dict:
            if "contained" in value and type(value["contained"]) is list:
                contained += len(value["contained"])
                if contained > max_contained:
                    text = f"The body has more than {max_contained} contained resources"
                    _refuse(text, "contained")
            if "reference" in value and type(value["reference"]) is str:
                references += 1
                if references > max_references:
                    _refuse(f"The body has more than {max_references} references", "reference")
            try:
                for item in value.values():
                    if type(item) in containers:
                        walk(item, depth + 1)
            except _OverBudget as over:  # the path is found only when it is needed
                over.path.append(next(k for k, v in value.items() if v is item))
                raise
            return
        if len(value) > max_items:
            raise _OverBudget(f"An array has {len(value)} items; the limit is {max_items}")
        try:
            for item in value:
                if type(item) in containers:
                    walk(item, depth + 1)
        except _OverBudget as over:
            over.path.append(next(i for i, v in enumerate(value) if v is item))
            raise

    entries = body.get("entry") if bundle else None
    if type(entries) is not list:
        walk(body, 1)
        return
    walk({k: v for k, v in body.items() if k != "entry"}, 1)
    for index, entry in enumerate(entries):
        if type(entry) in containers:
            try:
                walk(entry, 2)
            except _OverBudget as over:
                over.path += [index, "entry"]
                raise


def _refuse(diagnostics: str, key: str) -> None:
    over = _OverBudget(diagnostics)
    over.path.append(key)
    raise over


def _expression(reversed_path: list[str | int]) -> str:
    parts = reversed(reversed_path)
    text = str(next(parts))
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
