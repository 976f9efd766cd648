"""Loads the synthetic example trial (examples/trial/*.json transaction Bundles) into a store,
and the trial's ViewDefinitions (mappings/views) as stored ViewDefinitions.

Every Bundle uses conditional creates on identifiers and a view is written only when it
differs from the stored one, so loading twice adds nothing. Start-up never depends on what
clients wrote: a Bundle or view that conflicts with stored data (say a client's Patient with a
demo MRN, which makes a conditional create match two) is left out with a warning in the log.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import orjson

from fhir_bridge.domain.roles import ROLES
from fhir_bridge.errors import FHIRBridgeError, ResourceGoneError, ResourceNotFoundError
from fhir_bridge.services import bundles, tokens, view_definitions
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.smart_client import new_key

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "trial"
VIEWS = Path(__file__).resolve().parents[2] / "mappings" / "views"
log = logging.getLogger(__name__)


def load_examples(ctx: ServiceContext, folder: Path = EXAMPLES, base: str = "") -> int:
    """Post each Bundle of `folder` in name order as a transaction; returns the count of the
    entries loaded. A Bundle the store refuses is skipped with a warning."""
    entries = 0
    for path in sorted(folder.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        try:
            bundles.transaction(ctx, bundle.get("entry", []), base)
        except FHIRBridgeError as exc:
            _skipped(path, exc)
            continue
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
            try:
                view_definitions.update(ctx, {**view, "id": view_id})
            except FHIRBridgeError as exc:
                _skipped(path, exc)
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


def _skipped(path: Path, exc: FHIRBridgeError) -> None:
    """Say what was left out and why: the error's kind, code and element path, not its text,
    which may quote a client's identifiers (PHI stays out of logs)."""
    where = ", ".join(f"{i.code} at {i.expression or '(the request)'}" for i in exc.issues)
    log.warning(
        "demo data %s not loaded: %s (%s); the server starts without it",
        path.name,
        type(exc).__name__,
        where,
    )
