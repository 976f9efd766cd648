"""Bundle entries that tests of several layers post."""

from __future__ import annotations

import base64
from typing import Any


def patch_entry(url: str, patch: bytes) -> dict[str, Any]:
    """A transaction entry that PATCHes `url` with the JSON Patch text `patch` (R4 carries it
    as a Binary resource)."""
    return {
        "resource": {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": base64.b64encode(patch).decode(),
        },
        "request": {"method": "PATCH", "url": url},
    }
