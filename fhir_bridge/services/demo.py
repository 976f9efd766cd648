"""Loads the synthetic example trial (examples/trial/*.json transaction Bundles) into a store.

Every Bundle uses conditional creates on identifiers, so loading twice adds nothing.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_bridge.services import bundles
from fhir_bridge.services.context import ServiceContext

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "trial"


def load_examples(ctx: ServiceContext, folder: Path = EXAMPLES, base: str = "") -> int:
    """Post each Bundle of `folder` in name order as a transaction; returns the entry count."""
    entries = 0
    for path in sorted(folder.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        bundles.transaction(ctx, bundle.get("entry", []), base)
        entries += len(bundle.get("entry", []))
    return entries
