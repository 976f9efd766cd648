"""Resource and reference keys: getResourceKey() gives a resource's id, getReferenceKey() the id
in a relative literal reference to it, so views join on equal keys.

https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#joins-with-resource-and-reference-keys
"""

from __future__ import annotations

import re
from typing import Any

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def resource_keys(items: list[Any]) -> list[Any]:
    """getResourceKey(): the resource id, which getReferenceKey() finds in references to it."""
    return [
        item["id"]
        for item in items
        if type(item) is dict and "resourceType" in item and type(item.get("id")) is str
    ]


def reference_keys(items: list[Any], wanted: str | None) -> list[Any]:
    """getReferenceKey([type]): the keys of the resources the references point to."""
    out = []
    for item in items:
        if type(item) is dict:
            key = reference_key(item.get("reference"), wanted)
            if key is not None:
                out.append(key)
    return out


def reference_key(reference: Any, wanted: str | None) -> str | None:
    """The id of a relative literal reference (`Patient/123`, `Patient/123/_history/2`) to a
    `wanted` type (any when None); None for other references, which the spec lets go empty."""
    if type(reference) is not str:
        return None
    kind, slash, rest = reference.partition("/")
    if not slash or not (kind.isascii() and kind.isalpha() and kind[0].isupper()):
        return None
    if wanted is not None and kind != wanted:
        return None
    key, slash, history = rest.partition("/")
    if slash and not history.startswith("_history/"):
        return None
    return key if _ID.fullmatch(key) else None
