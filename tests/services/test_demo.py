"""The demo's trial ViewDefinitions are stored once, and again only when they change."""

from __future__ import annotations

from pathlib import Path

import orjson

from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.demo import VIEWS, load_views
from fhir_bridge.services.view_definitions import read
from fhir_bridge.store.sql import SQLStore


def test_trial_views_are_stored_and_a_second_load_writes_nothing(
    store: SQLStore, tmp_path: Path
) -> None:
    ctx = ServiceContext(store=store, validator=lambda resource, profiles: [])
    ids = load_views(ctx)
    assert "scores-long" in ids and len(ids) == len(list(VIEWS.glob("*.json")))
    assert load_views(ctx) == ids
    assert read(ctx, "scores-long").version_id == 1
    changed = tmp_path / "views"
    changed.mkdir()
    view = orjson.loads((VIEWS / "scores_long.json").read_bytes())
    (changed / "scores_long.json").write_bytes(orjson.dumps({**view, "title": "Changed"}))
    load_views(ctx, changed)
    stored = read(ctx, "scores-long")
    assert stored.version_id == 2 and orjson.loads(stored.data)["title"] == "Changed"
