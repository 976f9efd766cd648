"""Remembering what was found out about a value when that depends on nothing but the value.

Trial data repeats itself: the same codings, categories, units and item components arrive in
every score Observation. A complex value serialised by orjson is a cheap, exact key: a value
checked once gets the same verdict again (validation: the same issues, at its own path), a
CodeableConcept gives the same index rows again (indexing). Callers only use a Memo where the
work reads nothing outside the value; local `#` references (which read the enclosing resource's
contained list) are never remembered.

While one resource is checked and indexed (`SharedKeys`), the Memos share the keys they made:
the engine, the slicer, the clinical rules and the indexer look up the same component dicts.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any, Final

import orjson


class Budget:
    """Bytes of keys that the Memos sharing it keep together; server threads remember at once."""

    __slots__ = ("limit", "spent", "lock")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0
        self.lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self.lock:
            if self.spent + size > self.limit:
                return False
            self.spent += size
            return True

    def give_back(self, size: int) -> None:
        with self.lock:
            self.spent -= size


# What all Memos of a process keep together, unless given a budget of their own.
SHARED_BUDGET = Budget(32 * 1024 * 1024)
# Longer values are not remembered: long values rarely repeat.
MAX_KEY_BYTES = 2048
# A Memo whose first TRIAL look-ups hit less than a quarter of the time stops looking.
TRIAL: Final = 512
# Values one Memo remembers at most.
SIZE: Final = 4096


class _Scope:
    """One thread's open SharedKeys: the keys made in it, by id of the value (with the value,
    which keeps its id from being reused while the scope lasts), and whether the values come
    from plain JSON."""

    __slots__ = ("keys", "plain")

    def __init__(self, plain: bool) -> None:
        self.keys: dict[int, tuple[Any, bytes | None]] = {}
        self.plain = plain


# Each thread's _Scope, read with getattr: a compiled subclass of threading.local keeps its
# attributes in the object itself, shared by every thread (seen: a scope opened by one
# thread was read by another).
_SCOPES = threading.local()


class SharedKeys:
    """Within it, a value's key is made once, whichever Memo asks. Only for values that no
    one changes while it lasts. `plain`: they were parsed from JSON text for which plain_json
    holds, so their keys need no search for nulls and local references."""

    def __init__(self, plain: bool = False) -> None:
        self.plain = plain

    def __enter__(self) -> None:
        _SCOPES.scope = _Scope(self.plain)

    def __exit__(self, *exc: object) -> None:
        _SCOPES.scope = None


def plain_json(raw: bytes) -> bool:
    """Whether the values parsed from JSON text `raw` make keys with no null and no string
    starting with '#' (_serialised): it has neither, nor an escape, which could spell them in
    other bytes. One search of a request body instead of two of every key made of it
    (bench/instructions.py: 954k -> 930k instructions per resource)."""
    if raw.find(b"\\") >= 0 or raw.find(b"null") >= 0:
        return False
    return raw.find(b"#") < 0 or raw.find(b'"#') < 0  # one byte first: memchr, 100x faster


def _serialised(value: Any, plain: bool = False) -> bytes | None:
    try:
        key = orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits, lone surrogates: checked every time
        return None
    if len(key) > MAX_KEY_BYTES:
        return None
    # A null depends on its `_` twin beside it, and orjson writes NaN and infinities as null:
    # a null is never a key of its own. A local reference reads the resource's `contained`.
    # find() of one byte first: `b'"#' in key` alone costs twice orjson.dumps.
    if not plain and ((key.find(b"#") >= 0 and b'"#' in key) or key.find(b"null") >= 0):
        return None
    return key


class Memo:
    """Keys of values with what was found out about each (True for checks passed, the
    issues a walk found, the slice a value belongs to, index rows). A Memo whose values
    rarely repeat (identifiers, references to single resources) stops looking after TRIAL
    look-ups; its keys count against a Budget."""

    __slots__ = ("passed", "lookups", "hits", "active", "used", "budget")

    def __init__(self, budget: Budget = SHARED_BUDGET) -> None:
        self.passed: dict[Hashable, Any] = {}
        self.lookups = self.hits = self.used = 0
        self.active = True
        self.budget = budget

    def key(self, value: Any) -> bytes | None:
        """`value` serialised, when it may be looked up and remembered; else None."""
        if not self.active:
            return None
        scope: _Scope | None = getattr(_SCOPES, "scope", None)
        if scope is None:
            return _serialised(value)
        made = scope.keys.get(id(value))
        if made is not None and made[0] is value:
            return made[1]
        key = _serialised(value, scope.plain)
        scope.keys[id(value)] = (value, key)
        return key

    def lookup(self, value: Any) -> tuple[bytes | None, Any]:
        """key(value) and get() of it in one call: (None, None) when it has no key."""
        key = self.key(value)
        return (None, None) if key is None else (key, self.get(key))

    def get(self, key: Hashable) -> Any:
        """What was remembered of `key` when it passed, or None; counts look-ups during
        the trial."""
        found = self.passed.get(key)
        if self.lookups < TRIAL:
            self.lookups += 1
            self.hits += found is not None
            if self.lookups == TRIAL and self.hits * 4 < self.lookups:
                self.active = False
        return found

    def remember(self, key: bytes | tuple[str, bytes], verdict: Any = True) -> None:
        """Remember `verdict` (None: nothing to remember) for `key`."""
        size = len(key) if isinstance(key, bytes) else len(key[1])
        if verdict is None or len(self.passed) >= SIZE or not self.budget.take(size):
            return
        self.passed[key] = verdict
        self.used += size

    def forget(self) -> None:
        self.budget.give_back(self.used)
        self.passed.clear()
        self.lookups = self.hits = self.used = 0
        self.active = True
