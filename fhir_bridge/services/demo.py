"""Loads the synthetic example trial (examples/trial/*.json transaction Bundles) into a store,
and the trial's ViewDefinitions (mappings/views) as stored ViewDefinitions.

Every Bundle uses conditional creates on identifiers and a view is written only when it
differs from the stored one, so loading twice adds nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson

from fhir_bridge.domain.roles import ROLES
from fhir_bridge.errors import ResourceGoneError, ResourceNotFoundError
from fhir_bridge.services import bundles, tokens, view_definitions
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.smart_client import new_key

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


DEMO_SITE = "demo-site"


def register_clients(ctx: ServiceContext, keys_dir: Path) -> list[tuple[str, str, Path]]:
    """A demo client per role (id `demo-{role}`), its private key in `keys_dir/{role}.jwk`
    (made once, readable by this user only); (role, client id, key file) of each that can be
    used (a client registered earlier whose key file is gone cannot)."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    usable = []
    for role in ROLES:
        client_id, key_file = f"demo-{role}", keys_dir / f"{role}.jwk"
        if tokens.registered(ctx.store, client_id) is None:
            private_jwk, public_jwks = new_key(client_id)
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as f:
                json.dump(private_jwk, f)
            site = DEMO_SITE if role == "ehr" else None
            tokens.register(
                ctx.store, f"demo {role}", role, site=site, jwks=public_jwks, client_id=client_id
            )
        if key_file.is_file():
            usable.append((role, client_id, key_file))
    return usable
