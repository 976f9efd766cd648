"""Scoring QuestionnaireResponses into score Observations, on hand-checked cases."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_bridge.domain.fhir import parse_model
from fhir_bridge.errors import UnprocessableResourceError
from fhir_bridge.mapping import Mappings, score_response
from fhir_bridge.mapping.questionnaires import response

SEVERITY = "https://fhir-bridge.org/fhir/CodeSystem/severity"


def _qr(
    m: Mappings,
    instrument: str,
    scores: list[int],
    link_ids: list[str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    spec = m.instrument(instrument)
    ids = link_ids or [item.link_id for item in spec.items]
    qr = response(
        spec,
        dict(zip(ids, scores, strict=True)),
        subject="Patient/p1",
        authored="2023-03-01T10:00:00+01:00",
        encounter="Encounter/e1",
        **kwargs,
    )
    qr["id"] = "qr1"
    return qr


def _score(m: Mappings, qr: dict[str, Any]) -> dict[str, Any]:
    [obs] = score_response(qr, m)
    parse_model(obs)
    return obs


def _interpretation(obs: dict[str, Any]) -> str:
    [concept] = obs["interpretation"]
    [c] = concept["coding"]
    assert c["system"] == SEVERITY
    return str(c["code"])


# Totals worked out by hand from the item values (sum, or highest positive level for C-SSRS).
@pytest.mark.parametrize(
    ("instrument", "scores", "total", "band"),
    [
        ("madrs", [3, 4, 3, 3, 2, 3, 3, 3, 3, 1], 28, "madrs-moderate"),
        ("madrs", [0, 1, 0, 1, 0, 1, 0, 0, 0, 0], 3, "madrs-normal"),
        ("madrs", [6, 6, 6, 6, 6, 6, 6, 6, 6, 6], 60, "madrs-severe"),
        ("madrs", [2, 2, 2, 2, 2, 2, 2, 2, 2, 1], 19, "madrs-mild"),
        ("phq9", [1, 2, 1, 2, 0, 1, 1, 0, 0], 8, "phq9-mild"),
        ("phq9", [3, 3, 3, 3, 3, 3, 3, 3, 3], 27, "phq9-severe"),
        ("gad7", [2, 2, 1, 2, 1, 2, 1], 11, "gad7-moderate"),
        ("isi", [3, 3, 2, 3, 2, 3, 3], 19, "isi-moderate"),
        ("pcl5", [2] * 10 + [1] * 10, 30, "pcl5-below-cutoff"),
        ("pcl5", [2] * 16 + [1] * 4, 36, "pcl5-provisional-ptsd"),
        ("cssrs", [1, 1, 0, 0, 0], 2, "cssrs-nonspecific"),
        ("cssrs", [1, 0, 1, 0, 0], 3, "cssrs-method"),
        ("cssrs", [0, 0, 0, 0, 0], 0, "cssrs-none"),
    ],
)
def test_score_matches_hand_computed_total_and_band(
    m: Mappings, instrument: str, scores: list[int], total: int, band: str
) -> None:
    obs = _score(m, _qr(m, instrument, scores))
    assert obs["valueQuantity"] == {
        "value": total,
        "unit": "{score}",
        "system": "http://unitsofmeasure.org",
        "code": "{score}",
    }
    assert _interpretation(obs) == band
    assert [c["valueInteger"] for c in obs["component"]] == scores


def test_sds_total_sums_three_domains_and_not_days(m: Mappings) -> None:
    obs = _score(m, _qr(m, "sds", [6, 7, 5, 2, 3]))
    assert obs["valueQuantity"]["value"] == 18
    assert _interpretation(obs) == "sds-impaired"
    assert [c["code"]["coding"][0]["code"] for c in obs["component"]][3:] == [
        "sds-days-lost",
        "sds-days-unproductive",
    ]


def test_sds_below_five_on_every_domain_is_not_impaired(m: Mappings) -> None:
    obs = _score(m, _qr(m, "sds", [4, 4, 3, 0, 0]))
    assert obs["valueQuantity"]["value"] == 11
    assert _interpretation(obs) == "sds-not-impaired"


def test_phq9_answers_scored_from_loinc_answer_codes(m: Mappings) -> None:
    qr = _qr(m, "phq9", [0, 1, 2, 3, 0, 1, 2, 3, 0])
    assert qr["item"][3]["answer"][0]["valueCoding"]["code"] == "LA6571-9"
    assert _score(m, qr)["valueQuantity"]["value"] == 12


def test_score_observation_shape(m: Mappings) -> None:
    qr = _qr(m, "madrs", [3] * 10, study="ResearchStudy/psykforsk-mat-mdd")
    obs = _score(m, qr)
    assert obs["code"]["coding"][0] == {
        "system": "https://fhir-bridge.org/fhir/CodeSystem/assessment",
        "code": "madrs-total",
        "display": "MADRS total score",
    }
    assert obs["category"][0]["coding"][0]["code"] == "survey"
    assert obs["meta"]["profile"] == [
        "https://fhir-bridge.org/fhir/StructureDefinition/madrs-observation"
    ]
    assert obs["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr1"}]
    assert obs["subject"] == {"reference": "Patient/p1"}
    assert obs["encounter"] == {"reference": "Encounter/e1"}
    assert obs["effectiveDateTime"] == "2023-03-01T10:00:00+01:00"
    assert obs["extension"][0]["valueReference"] == {"reference": "ResearchStudy/psykforsk-mat-mdd"}
    assert obs["status"] == "final"


def test_derived_from_keeps_urn_uuid_id(m: Mappings) -> None:
    qr = _qr(m, "gad7", [0] * 7)
    qr["id"] = "urn:uuid:7f1bd0ae-4c1e-4a39-9d8b-0d8f0c43d2a1"
    assert _score(m, qr)["derivedFrom"] == [{"reference": qr["id"]}]


def test_incomplete_response_has_items_but_no_total(m: Mappings) -> None:
    obs = _score(m, _qr(m, "madrs", [2, 3], link_ids=["1", "2"]))
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert len(obs["component"]) == 2


def test_in_progress_response_gives_preliminary_observation(m: Mappings) -> None:
    assert _score(m, _qr(m, "gad7", [1] * 7, status="in-progress"))["status"] == "preliminary"


def _rejection(m: Mappings, qr: dict[str, Any]) -> list[tuple[str, str | None]]:
    with pytest.raises(UnprocessableResourceError) as caught:
        score_response(qr, m)
    return [(issue.code, issue.expression) for issue in caught.value.issues]


def test_item_out_of_range_is_rejected_with_its_path(m: Mappings) -> None:
    qr = _qr(m, "madrs", [3] * 10)
    qr["item"][3]["answer"][0]["valueInteger"] = 7
    assert _rejection(m, qr) == [("value", "QuestionnaireResponse.item[3].answer[0].valueInteger")]


def test_unknown_item_is_rejected(m: Mappings) -> None:
    qr = _qr(m, "madrs", [3] * 10)
    qr["item"].append({"linkId": "11", "answer": [{"valueInteger": 1}]})
    assert _rejection(m, qr) == [("not-found", "QuestionnaireResponse.item[10].linkId")]


def test_unknown_questionnaire_is_rejected(m: Mappings) -> None:
    qr = _qr(m, "madrs", [3] * 10)
    qr["questionnaire"] = "http://example.org/Questionnaire/hamd"
    assert _rejection(m, qr) == [("not-supported", "QuestionnaireResponse.questionnaire")]


def test_answer_code_outside_options_is_rejected(m: Mappings) -> None:
    qr = _qr(m, "phq9", [1] * 9)
    qr["item"][8]["answer"][0]["valueCoding"]["code"] = "LA9999-9"
    assert _rejection(m, qr) == [
        ("code-invalid", "QuestionnaireResponse.item[8].answer[0].valueCoding")
    ]


def test_every_bad_answer_is_reported_at_once(m: Mappings) -> None:
    qr = _qr(m, "sds", [6, 7, 5, 2, 3])
    qr["item"][0]["answer"][0]["valueInteger"] = 11
    qr["item"][4]["answer"][0]["valueInteger"] = 8
    qr["item"][1]["answer"][0] = {"valueString": "7"}
    assert _rejection(m, qr) == [
        ("value", "QuestionnaireResponse.item[0].answer[0].valueInteger"),
        ("value", "QuestionnaireResponse.item[1].answer[0]"),
        ("value", "QuestionnaireResponse.item[4].answer[0].valueInteger"),
    ]


def test_response_without_subject_is_rejected(m: Mappings) -> None:
    qr = _qr(m, "gad7", [1] * 7)
    del qr["subject"]
    assert _rejection(m, qr) == [("required", "QuestionnaireResponse.subject")]


def test_nested_group_items_are_scored(m: Mappings) -> None:
    qr = _qr(m, "gad7", [1, 1, 1, 1, 1, 1, 1])
    qr["item"] = [{"linkId": "group", "item": qr["item"]}]
    assert _score(m, qr)["valueQuantity"]["value"] == 7


def test_versioned_questionnaire_canonical_is_scored(m: Mappings) -> None:
    qr = _qr(m, "isi", [1] * 7)
    qr["questionnaire"] += "|1"
    assert _score(m, qr)["valueQuantity"]["value"] == 7
