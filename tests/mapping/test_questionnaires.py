"""The Questionnaires follow SDC (answer scores, a calculated total, codes, required items,
copyright, the package version) and score as the server does under an independent FHIRPath
engine (fhirpathpy, which has no SDC weight(): the total item's calculatedExpression is used)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from fhir_bridge.errors import UnprocessableResourceError
from fhir_bridge.mapping import Mappings, score_response
from fhir_bridge.mapping.questionnaires import (
    CALCULATED_EXPRESSION,
    ORDINAL_VALUE,
    TOTAL_LINK_ID,
    questionnaire,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "trial"
INSTRUMENTS = ["madrs", "sds", "phq9", "gad7", "isi", "pcl5", "cssrs"]


def _questionnaire(m: Mappings, instrument: str) -> dict[str, Any]:
    return questionnaire(m.instrument(instrument), m.ig.version)


def _example_responses(m: Mappings, instrument: str) -> list[dict[str, Any]]:
    url = m.instrument(instrument).questionnaire_url
    found = []
    for path in sorted(EXAMPLES.glob("*.json")):
        for entry in json.loads(path.read_text())["entry"]:
            resource = entry["resource"]
            if resource.get("questionnaire") == url and resource["status"] == "completed":
                found.append({**resource, "id": "example"})
    return found


def _calculated_total(q: dict[str, Any], qr: dict[str, Any]) -> list[Any]:
    [total] = [item for item in q["item"] if item["linkId"] == TOTAL_LINK_ID]
    [extension] = [e for e in total["extension"] if e["url"] == CALCULATED_EXPRESSION]
    expression = extension["valueExpression"]["expression"]
    result: list[Any] = evaluate(qr, expression, {"resource": qr}, models["r4"])
    return result


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_the_calculated_total_is_the_server_total_for_every_example_response(
    m: Mappings, instrument: str
) -> None:
    q = _questionnaire(m, instrument)
    responses = _example_responses(m, instrument)
    assert responses, f"no example response of {instrument}"
    for qr in responses:
        [score] = score_response(qr, m)
        assert _calculated_total(q, qr) == [score["valueQuantity"]["value"]]


def test_the_calculated_total_is_empty_while_an_item_is_unanswered(m: Mappings) -> None:
    qr = _example_responses(m, "madrs")[0]
    qr["item"] = qr["item"][1:]
    assert _calculated_total(_questionnaire(m, "madrs"), qr) == []


def test_the_sds_total_sums_items_1_to_3_only(m: Mappings) -> None:
    q = _questionnaire(m, "sds")
    [total] = [item for item in q["item"] if item["linkId"] == TOTAL_LINK_ID]
    expression = total["extension"][0]["valueExpression"]["expression"]
    assert "('1' | '2' | '3')" in expression
    assert "days" not in expression


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_every_answer_option_carries_its_score_as_ordinal_value(
    m: Mappings, instrument: str
) -> None:
    spec = m.instrument(instrument)
    scores = {
        option.code.partition(":")[2]: option.score
        for options in spec.answer_sets.values()
        for option in options
    }
    for item in _questionnaire(m, instrument)["item"]:
        if item["linkId"] == TOTAL_LINK_ID:
            continue
        for option in item["answerOption"]:
            [ordinal] = [
                e["valueDecimal"] for e in option["extension"] if e["url"] == ORDINAL_VALUE
            ]
            value = option.get("valueInteger")
            assert ordinal == (
                value if value is not None else scores[option["valueCoding"]["code"]]
            )
        spec_item = spec.item(item["linkId"])
        assert spec_item is not None
        assert len(item["answerOption"]) == spec_item.max - spec_item.min + 1


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_questionnaires_have_a_code_and_the_package_version(m: Mappings, instrument: str) -> None:
    q = _questionnaire(m, instrument)
    assert q["version"] == m.ig.version == "0.1.0"
    assert q["code"][0]["code"]


def test_the_items_the_total_needs_are_required(m: Mappings) -> None:
    required = {i["linkId"]: i["required"] for i in _questionnaire(m, "sds")["item"]}
    assert required == {
        "1": True,
        "2": True,
        "3": True,
        "days-lost": False,
        "days-unproductive": False,
        TOTAL_LINK_ID: False,
    }


def test_sds_states_its_copyright(m: Mappings) -> None:
    assert "Sheehan" in _questionnaire(m, "sds")["copyright"]


def test_conformance_resources_carry_one_version(m: Mappings) -> None:
    versions = {r["version"] for r in m.conformance_resources() if "version" in r}
    assert versions == {m.ig.version}


def test_a_response_with_the_right_total_item_is_scored(m: Mappings) -> None:
    qr = _example_responses(m, "madrs")[0]
    [score] = score_response(qr, m)
    qr["item"].append(
        {"linkId": TOTAL_LINK_ID, "answer": [{"valueInteger": score["valueQuantity"]["value"]}]}
    )
    assert score_response(qr, m)[0]["valueQuantity"] == score["valueQuantity"]


def test_a_response_with_a_wrong_total_item_is_refused(m: Mappings) -> None:
    qr = _example_responses(m, "madrs")[0]
    [score] = score_response(qr, m)
    right = score["valueQuantity"]["value"]
    qr["item"].append({"linkId": TOTAL_LINK_ID, "answer": [{"valueInteger": right + 1}]})
    with pytest.raises(UnprocessableResourceError) as refused:
        score_response(qr, m)
    [issue] = refused.value.issues
    where = f"QuestionnaireResponse.item[{len(qr['item']) - 1}].answer"
    assert (issue.code, issue.expression) == ("invariant", where)
    assert issue.diagnostics == f"MADRS total must be one valueInteger, the items give {right}"
