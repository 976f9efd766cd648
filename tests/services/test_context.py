"""ServiceContext.for_body: what one scan of a request body spares each of its resources."""

from __future__ import annotations

import orjson

from fhir_bridge.services import trial_rules
from fhir_bridge.store.sql import SQLStore
from tests.bundle_entries import patch_entry

LOCAL = "http://ehr.example.org/fhir/CodeSystem/local-assessment"
PROJECT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"


def body(system: str, **extra: object) -> bytes:
    observation = {"resourceType": "Observation", "code": {"coding": [{"system": system}]}}
    return orjson.dumps({"entry": [{"resource": {**observation, **extra}}]})


def test_a_plain_body_with_project_codes_needs_no_transform_and_no_key_search(
    store: SQLStore,
) -> None:
    ctx = trial_rules.trial_context(store, trial_rules.load_trial())
    scoped = ctx.for_body(body(PROJECT))
    assert scoped.transforms == [] and scoped.plain_body
    assert len(ctx.transforms) == 2 and not ctx.plain_body  # the shared context is unchanged


def test_local_codes_a_null_or_a_local_reference_keep_the_full_checks(store: SQLStore) -> None:
    ctx = trial_rules.trial_context(store, trial_rules.load_trial())
    local = ctx.for_body(body(LOCAL))
    assert local.transforms == ctx.transforms and not local.plain_body
    assert not ctx.for_body(body(PROJECT, valueString=None)).plain_body
    assert not ctx.for_body(body(PROJECT, subject={"reference": "#p"})).plain_body


def test_a_score_without_interpretation_keeps_the_severity_transform(store: SQLStore) -> None:
    ctx = trial_rules.trial_context(store, trial_rules.load_trial())
    score = body(PROJECT, code={"coding": [{"system": PROJECT, "code": "madrs-total"}]})
    kept = ctx.for_body(score).transforms
    assert [type(t).__name__ for t in kept] == ["SeverityInterpretation"]


def test_a_body_with_a_patch_entry_keeps_every_transform(store: SQLStore) -> None:
    # its JSON Patch is base64 in a Binary: a local code it writes is not in the body's text
    ctx = trial_rules.trial_context(store, trial_rules.load_trial())
    patch = orjson.dumps([{"op": "add", "path": "/code/coding/-", "value": {"system": LOCAL}}])
    raw = orjson.dumps({"entry": [patch_entry("Observation/1", patch)]})
    assert LOCAL.encode() not in raw
    assert ctx.for_body(raw).transforms == ctx.transforms
