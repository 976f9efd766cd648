"""Literal references to this server (`Patient/123`) must name a resource it holds: a write
whose reference names none is refused, 422 naming the element (HAPI FHIR refuses them too).

https://hl7.org/fhir/R4/references.html#literal — a relative reference is resolved against
the server's base. Inside a transaction, a reference may also name a resource another entry
creates or updates. Bulk loads that write in dependency order may turn the check off
(setting `check_references`, env FHIR_BRIDGE_CHECK_REFERENCES=false).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import UnprocessableResourceError
from fhir_bridge.store.base import Staged, StoreSession

# A relative reference as the stored JSON spells it: `"reference":"Type/id[/_history/vid]"`.
# In compact JSON that key is a member's key: inside a string its quotes would be escaped.
_STORED_REFERENCE = re.compile(
    rb'"reference":"([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?)"'
)


class LocalTargets:
    """What the local references of one write, or of one transaction's writes, may name: the
    live resources of `session` (each looked up once) and those in `written` (`Type/id` the
    transaction creates or updates, perhaps after the entry that names them)."""

    def __init__(self, session: StoreSession, written: Iterable[str] = ()) -> None:
        self.session = session
        self.known: dict[str, bool] = dict.fromkeys(written, True)

    def check(self, staged: Staged, resource: dict[str, Any]) -> None:
        """Refuse `resource` (stored as `staged`) when a local reference names no resource."""
        own = f"{staged.resource_type}/{staged.id}"
        missing = [
            ref
            for ref in dict.fromkeys(m.decode() for m in _STORED_REFERENCE.findall(staged.tail))
            if ref != own and not self._exists(ref)
        ]
        if missing:
            raise UnprocessableResourceError(issues=_issues(resource, set(missing)))

    def _exists(self, ref: str) -> bool:
        found = self.known.get(ref)
        if found is None:
            resource_type, resource_id, *version = ref.split("/")
            if version:
                stored = self.session.vread(resource_type, resource_id, _number(version[1]))
            else:
                stored = self.session.read(resource_type, resource_id)
            found = self.known[ref] = stored is not None and not stored.deleted
        return found


def _number(version: str) -> int:
    return int(version) if version.isdigit() and len(version) < 19 else -1


def _issues(resource: dict[str, Any], missing: set[str]) -> list[Issue]:
    """An issue per element whose reference is among `missing`, in document order."""
    issues: list[Issue] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "reference" and item in missing:
                    text = f"The reference '{item}' names no resource on this server"
                    issues.append(Issue("error", "not-found", text, f"{path}.reference"))
                elif isinstance(item, (dict, list)):
                    walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(resource, str(resource.get("resourceType")))
    return issues
