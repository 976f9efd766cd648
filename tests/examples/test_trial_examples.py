"""The SYNTHETIC example trial and EHR messages: reproducible, R4-parsable, clinically valid."""

from __future__ import annotations

import importlib.util
import json
import statistics
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fhir_bridge.domain.fhir import parse_model
from fhir_bridge.domain.search_parameters import search_parameter
from fhir_bridge.mapping import (
    Mappings,
    check_clinical,
    load_mappings,
    read_table,
    score_response,
    translate_codes,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def m() -> Mappings:
    return load_mappings()


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_trial", EXAMPLES / "generate_trial.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bundles() -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((EXAMPLES / "trial").glob("*.json"))
    ]


def _resources(bundles: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for b in bundles:
        for e in b["entry"]:
            if e["resource"]["resourceType"] == kind:
                seen[e["fullUrl"]] = e["resource"]
    return list(seen.values())


def test_generator_reproduces_the_checked_in_files(
    generator: ModuleType, m: Mappings, tmp_path: Path
) -> None:
    written = generator.generate(tmp_path, m)
    assert len(written) == 17
    for path in written:
        relative = path.relative_to(tmp_path)
        assert path.read_bytes() == (EXAMPLES / relative).read_bytes(), relative


def test_every_example_resource_parses_as_r4b(bundles: list[dict[str, Any]]) -> None:
    messages = [
        json.loads(p.read_text(encoding="utf-8")) for p in (EXAMPLES / "messages").glob("*.json")
    ]
    for resource in [*bundles, *messages]:
        parse_model(resource)
        for entry in resource.get("entry", []):
            parse_model(entry["resource"])


def test_every_entry_is_retry_safe_with_urn_uuid(bundles: list[dict[str, Any]]) -> None:
    """A conditional create on a search parameter the type has, or an update by id."""
    for b in bundles:
        assert b["type"] == "transaction"
        urls = [e["fullUrl"] for e in b["entry"]]
        assert len(urls) == len(set(urls))
        for e in b["entry"]:
            assert e["fullUrl"].startswith("urn:uuid:")
            resource_type = e["resource"]["resourceType"]
            if e["request"]["method"] == "PUT":
                assert e["request"]["url"] == f"{resource_type}/{e['resource']['id']}"
                continue
            assert e["request"]["method"] == "POST"
            param = e["request"]["ifNoneExist"].split("=")[0]
            assert search_parameter(resource_type, param) is not None


def test_cohort_is_shaped_like_the_trial(bundles: list[dict[str, Any]]) -> None:
    patients = _resources(bundles, "Patient")
    assert Counter(p["gender"] for p in patients) == {"female": 7, "male": 5}
    assert all("SYNTHETIC" in p["name"][0]["text"] for p in patients)
    subjects = _resources(bundles, "ResearchSubject")
    assert Counter(s["status"] for s in subjects) == {"off-study": 11, "withdrawn": 1}
    [group] = _resources(bundles, "Group")
    assert len(group["member"]) == 12
    assert len(_resources(bundles, "AdverseEvent")) == 1
    administrations = _resources(bundles, "MedicationAdministration")
    supplemental = [a for a in administrations if "partOf" in a]
    assert len(administrations) == 2 * len(supplemental) == 2 * (11 * 2 + 1)
    procedures = _resources(bundles, "Procedure")
    assert len(procedures) == 11 * 9 + 3  # the withdrawn participant had 3 preparatory sessions


def _madrs_totals(bundles: list[dict[str, Any]], visit_suffix: str) -> list[float]:
    encounters = {e["fullUrl"]: e["resource"] for b in bundles for e in b["entry"]}
    totals = []
    for obs in _resources(bundles, "Observation"):
        if obs["code"]["coding"][0]["code"] != "madrs-total":
            continue
        visit = encounters[obs["encounter"]["reference"]]["type"][0]["coding"][0]["code"]
        if visit == visit_suffix:
            totals.append(obs["valueQuantity"]["value"])
    return totals


def test_madrs_falls_from_about_30_to_about_10(bundles: list[dict[str, Any]]) -> None:
    baseline = _madrs_totals(bundles, "baseline")
    post = _madrs_totals(bundles, "post-treatment")
    assert len(baseline) == 12 and len(post) == 11
    assert 25 <= statistics.mean(baseline) <= 35
    assert 5 <= statistics.mean(post) <= 15


def test_examples_pass_the_clinical_rules(bundles: list[dict[str, Any]], m: Mappings) -> None:
    for b in bundles:
        for e in b["entry"]:
            assert [i for i in check_clinical(e["resource"], m) if i.is_error] == [], e["fullUrl"]


def test_score_observations_follow_from_their_responses(
    bundles: list[dict[str, Any]], m: Mappings
) -> None:
    entries = {e["fullUrl"]: e["resource"] for b in bundles for e in b["entry"]}
    observations = _resources(bundles, "Observation")
    assert len(observations) == len(_resources(bundles, "QuestionnaireResponse"))
    for obs in observations:
        qr_url = obs["derivedFrom"][0]["reference"]
        [again] = score_response(dict(entries[qr_url], id=qr_url), m)
        assert {k: v for k, v in obs.items() if k != "identifier"} == {
            k: v for k, v in again.items() if k != "meta"
        } | {"meta": obs["meta"]}


def test_csv_export_reimports_to_the_same_scores(m: Mappings) -> None:
    text = (EXAMPLES / "visit-scores.csv").read_text(encoding="utf-8")
    rows = read_table(text, "visit-scores", m)
    totals = [row.scores["madrs"].total for row in rows if "madrs" in row.scores]
    assert len(totals) == 12 + 11 + 11 and None not in totals


def test_messages_cover_each_ehr_message(m: Mappings) -> None:
    qr = json.loads((EXAMPLES / "messages" / "madrs-response.json").read_text("utf-8"))
    [obs] = score_response(dict(qr, id="example-madrs"), m)
    assert obs["derivedFrom"] == [{"reference": "QuestionnaireResponse/example-madrs"}]
    session = json.loads((EXAMPLES / "messages" / "dosing-session.json").read_text("utf-8"))
    kinds = [e["resource"]["resourceType"] for e in session["entry"]]
    assert kinds == ["Patient", "Encounter", "MedicationAdministration", "MedicationAdministration"]
    initial, supplemental = session["entry"][2], session["entry"][3]
    assert supplemental["resource"]["partOf"] == [{"reference": initial["fullUrl"]}]
    local = json.loads((EXAMPLES / "messages" / "local-coded-observation.json").read_text("utf-8"))
    translated = translate_codes(local, m)
    assert translated["code"]["coding"][1]["code"] == "madrs-total"
    assert check_clinical(translated, m) == []


def test_examples_have_no_errors_under_the_project_profiles(m: Mappings) -> None:
    from fhir_bridge.validation import get_validator

    validator = get_validator()
    validator.add_profiles(
        [r for r in m.conformance_resources() if r["resourceType"] == "StructureDefinition"]
    )
    paths = [EXAMPLES / "trial" / "00-study.json", EXAMPLES / "trial" / "03-participant-03.json"]
    paths += sorted((EXAMPLES / "messages").glob("*.json"))
    for path in paths:
        resource = json.loads(path.read_text(encoding="utf-8"))
        errors = [i for i in validator.validate(resource) if i.is_error]
        assert errors == [], path.name
    bad = json.loads((EXAMPLES / "messages" / "local-coded-observation.json").read_text("utf-8"))
    bad = translate_codes(bad, m)
    bad["valueQuantity"]["value"] = 10  # the items sum to 9
    assert [i.diagnostics.split(":")[0] for i in validator.validate(bad) if i.is_error] == [
        "madrs-total"
    ]
