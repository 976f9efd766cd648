"""The demo trial: its ViewDefinitions are stored once, and again only when they change; a
Bundle that conflicts with what clients stored is skipped, not fatal."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from fhir_bridge.services import resources
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.demo import EXAMPLES, VIEWS, load_examples, load_views
from fhir_bridge.services.trial_rules import load_trial, trial_context
from fhir_bridge.services.view_definitions import read
from fhir_bridge.store.search import find_ids
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


def test_a_bundle_that_conflicts_with_client_data_is_skipped_with_a_warning(
    store: SQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = trial_context(store, load_trial())
    mrn = {"system": "http://ehr.example.org/fhir/sid/mrn", "value": "SYN-100001"}
    # two clients' Patients with participant 01's MRN: the study's conditional create
    # matches both, and the participants' Bundles refer to what the study creates
    created = [
        resources.create(ctx, {"resourceType": "Patient", "identifier": [mrn]})[0] for _ in range(2)
    ]
    with caplog.at_level(logging.WARNING, logger="fhir_bridge.services.demo"):
        assert load_examples(ctx) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == (
        "demo data 00-study.json not loaded: PreconditionFailedError "
        "(multiple-matches at Bundle.entry[3].request.ifNoneExist); "
        "the server starts without it"
    )
    files = sorted(p.name for p in EXAMPLES.glob("*.json"))
    assert [m.split()[2] for m in messages] == files
    caplog.clear()
    resources.delete(ctx, "Patient", created[1].id)  # mended: the next start loads it all
    total = sum(len(orjson.loads((EXAMPLES / f).read_bytes())["entry"]) for f in files)
    assert load_examples(ctx) == total and caplog.records == []
    with store.session() as session:
        assert find_ids(session.execute, "Patient", "identifier=SYN-100001") == [created[0].id]
