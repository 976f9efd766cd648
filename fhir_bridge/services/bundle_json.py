"""Bundles assembled around stored JSON bytes, so resources are never re-serialised.

https://hl7.org/fhir/R4/bundle.html — the skeleton is built with orjson and each stored
resource's bytes are spliced in where `resource` belongs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_bridge.store.base import StoredResource
from fhir_bridge.store.sql import now_instant

_PLACEHOLDER = "\x00resource\x00"


@dataclass(slots=True)
class Entry:
    full_url: str | None
    resource: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # search, request, response


def build(
    bundle_type: str,
    entries: Iterable[Entry],
    total: int | None = None,
    links: dict[str, str] | None = None,
) -> bytes:
    """A Bundle of `bundle_type` whose entry resources are the given bytes."""
    skeleton: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now_instant()},
        "type": bundle_type,
    }
    if total is not None:
        skeleton["total"] = total
    if links:
        skeleton["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    parts: list[bytes] = []
    json_entries: list[dict[str, Any]] = []
    for entry in entries:
        item: dict[str, Any] = {}
        if entry.full_url:
            item["fullUrl"] = entry.full_url
        if entry.resource is not None:
            item["resource"] = _PLACEHOLDER
            parts.append(entry.resource)
        item.update(entry.extra)
        json_entries.append(item)
    if json_entries:
        skeleton["entry"] = json_entries
    encoded = orjson.dumps(skeleton)
    marker = orjson.dumps(_PLACEHOLDER)
    pieces = encoded.split(marker)
    out = bytearray(pieces[0])
    for resource, rest in zip(parts, pieces[1:], strict=True):
        out += resource
        out += rest
    return bytes(out)


def history_entry(base: str, stored: StoredResource) -> Entry:
    """An entry of a history Bundle: https://hl7.org/fhir/R4/http.html#history."""
    url = f"{stored.resource_type}/{stored.id}"
    created = stored.method == "POST" or (stored.method == "PUT" and stored.version_id == 1)
    status = "204 No Content" if stored.deleted else "201 Created" if created else "200 OK"
    return Entry(
        full_url=f"{base}/{url}",
        resource=None if stored.deleted else stored.data,
        extra={
            "request": {
                "method": stored.method,
                "url": url if stored.method != "POST" else stored.resource_type,
            },
            "response": {
                "status": status,
                "etag": f'W/"{stored.version_id}"',
                "lastModified": stored.last_updated,
            },
        },
    )
