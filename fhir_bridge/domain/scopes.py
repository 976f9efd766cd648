"""SMART scopes: what a token lets its client do with which resource types.

https://build.fhir.org/ig/HL7/smart-app-launch/scopes-and-launch-context.html — v2 scopes name
the interactions as letters (`system/Observation.cruds`: create, read, update, delete,
search); the v1 `read` and `write` are accepted as `rs` and `cud`, `*` as all five.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACTIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": ACTIONS}
_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]{1,5})$")


class ScopeError(ValueError):
    """A scope this server does not understand."""


@dataclass(frozen=True, slots=True)
class Scope:
    resource_type: str  # or "*"
    actions: frozenset[str]

    def grants(self, resource_type: str, action: str) -> bool:
        return action in self.actions and self.resource_type in ("*", resource_type)

    def covers(self, other: Scope) -> bool:
        """True when everything `other` grants, this grants too."""
        return other.actions <= self.actions and self.resource_type in ("*", other.resource_type)

    def __str__(self) -> str:
        return f"system/{self.resource_type}.{''.join(a for a in ACTIONS if a in self.actions)}"


def parse_scope(text: str) -> Scope:
    match = _SCOPE.match(text)
    if match is None:
        raise ScopeError(f"'{text}' is not a system scope")
    resource_type, letters = match.groups()
    letters = _V1.get(letters, letters)
    if any(a not in ACTIONS for a in letters) or sorted(set(letters), key=ACTIONS.index) != list(
        letters
    ):
        raise ScopeError(f"'{text}': the interactions must be letters of 'cruds' in that order")
    return Scope(resource_type, frozenset(letters))


def parse_scopes(text: str) -> list[Scope]:
    """A space-separated scope string; ScopeError on the first it does not understand."""
    return [parse_scope(part) for part in text.split()]


def grants(scopes: list[Scope], resource_type: str, action: str) -> bool:
    return any(s.grants(resource_type, action) for s in scopes)


def allowed(requested: list[Scope], maximum: list[Scope]) -> bool:
    """True when every requested scope lies within one of the maximum ones."""
    return all(any(m.covers(r) for m in maximum) for r in requested)
