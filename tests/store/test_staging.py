"""Writes staged before the write lock (store/staging.py)."""

from __future__ import annotations

import orjson

from fhir_bridge.store.indexing import extract_index
from fhir_bridge.store.staging import TOKEN_SETS, stage

PROFILE = "https://fhir-bridge.org/fhir/StructureDefinition/madrs-score"


def observation(code: str) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "meta": {"versionId": "7", "profile": [PROFILE]},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
    }


def test_the_staged_json_takes_the_version_stamp_inside_meta() -> None:
    staged = stage(observation("44261-6"), extract_index)
    stamp = b'"versionId":"1","lastUpdated":"2026-01-01T00:00:00Z"'
    body = orjson.loads(staged.head + stamp + staged.tail)
    assert list(body) == ["resourceType", "id", "meta", "status", "code"]
    assert body["meta"] == {
        "profile": [PROFILE],
        "versionId": "1",
        "lastUpdated": "2026-01-01T00:00:00Z",
    }
    assert body["code"] == observation("44261-6")["code"]


def test_equal_token_values_stage_the_same_set_and_other_values_another() -> None:
    def code_set(resource: dict[str, object]) -> int:
        rows = stage(resource, extract_index).rows[TOKEN_SETS]
        return next(row[3] for row in rows if row[2] == "code")

    assert code_set(observation("44261-6")) == code_set({**observation("44261-6"), "id": "o2"})
    assert code_set(observation("44261-6")) != code_set(observation("70274-6"))


def test_the_same_token_values_in_another_order_are_the_same_set() -> None:
    loinc = {"system": "http://loinc.org", "code": "44261-6"}
    local = {"system": "https://fhir-bridge.org/fhir/CodeSystem/assessment", "code": "madrs-total"}

    def code_set(codings: list[dict[str, str]]) -> int:
        resource = {**observation("x"), "code": {"coding": codings}}
        rows = stage(resource, extract_index).rows[TOKEN_SETS]
        return next(row[3] for row in rows if row[2] == "code")

    assert code_set([loinc, local]) == code_set([local, loinc])
