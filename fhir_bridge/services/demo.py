"""Loads the synthetic example trial (examples/trial/*.json transaction Bundles) into a store,
and the trial's ViewDefinitions (mappings/views) as stored ViewDefinitions.

Every Bundle uses conditional creates on identifiers and a view is written only when it
differs from the stored one, so loading twice adds nothing.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_bridge.errors import ResourceGoneError, ResourceNotFoundError
from fhir_bridge.services import bundles, view_definitions
from fhir_bridge.services.context import ServiceContext

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "trial"
VIEWS = Path(__file__).resolve().parents[2] / "mappings" / "views"


def load_examples(ctx: ServiceContext, folder: Path = EXAMPLES, base: str = "") -> int:
    """Post each Bundle of `folder` in name order as a transaction; returns the entry count."""
    entries = 0
    for path in sorted(folder.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        bundles.transaction(ctx, bundle.get("entry", []), base)
        entries += len(bundle.get("entry", []))
    return entries


def load_views(ctx: ServiceContext, folder: Path = VIEWS) -> list[str]:
    """Store each ViewDefinition of `folder` as ViewDefinition/{name with - for _}; the ids."""
    ids = []
    for path in sorted(folder.glob("*.json")):
        view = orjson.loads(path.read_bytes())
        view_id = str(view["name"]).replace("_", "-")
        ids.append(view_id)
        try:
            stored = orjson.loads(view_definitions.read(ctx, view_id).data)
        except (ResourceNotFoundError, ResourceGoneError):
            stored = None
        if stored is None or {k: v for k, v in stored.items() if k not in ("id", "meta")} != view:
            view_definitions.update(ctx, {**view, "id": view_id})
    return ids
