"""Profile differentials: shape, item slices, and FHIRPath invariants evaluated by fhirpathpy."""

from __future__ import annotations

from typing import Any

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from fhir_bridge.domain.fhir import parse_model
from fhir_bridge.mapping import Mappings
from fhir_bridge.mapping.observations import score_observation
from fhir_bridge.mapping.profiles import structure_definitions
from fhir_bridge.services.trial_rules import load_trial

INSTRUMENTS = ["madrs", "sds", "phq9", "gad7", "isi", "pcl5", "cssrs"]


def _profile(m: Mappings, name: str) -> dict[str, Any]:
    return next(sd for sd in structure_definitions(m) if sd["id"] == name)


def _elements(sd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in sd["differential"]["element"]}


def _holds(sd: dict[str, Any], obs: dict[str, Any], model: Any) -> list[bool]:
    constraints = _elements(sd)["Observation"]["constraint"]
    return [evaluate(obs, c["expression"], {}, model) == [True] for c in constraints]


def test_every_conformance_resource_parses_as_r4b(m: Mappings) -> None:
    resources = m.conformance_resources() + m.study_resources()
    for resource in resources:
        parse_model(resource)
    ids = [(r["resourceType"], r["id"]) for r in resources]
    assert len(ids) == len(set(ids))


def test_profiles_are_differentials_on_core_types(m: Mappings) -> None:
    names = {sd["id"]: sd["type"] for sd in structure_definitions(m)}
    assert names == {
        **{f"{i}-observation": "Observation" for i in INSTRUMENTS},
        "mdma-administration": "MedicationAdministration",
        "mdma-medication": "Medication",
        "trial-patient": "Patient",
        "trial-research-subject": "ResearchSubject",
        "visit-encounter": "Encounter",
    }
    for sd in structure_definitions(m):
        assert sd["url"] == f"https://fhir-bridge.org/fhir/StructureDefinition/{sd['id']}"
        assert sd["derivation"] == "constraint"
        for element in sd["differential"]["element"]:
            assert element["path"] == ".".join(p.split(":")[0] for p in element["id"].split("."))


def test_madrs_profile_fixes_code_category_and_item_ranges(m: Mappings) -> None:
    elements = _elements(_profile(m, "madrs-observation"))
    assert elements["Observation.code"]["patternCodeableConcept"] == {
        "coding": [
            {"system": "https://fhir-bridge.org/fhir/CodeSystem/assessment", "code": "madrs-total"}
        ]
    }
    assert elements["Observation.category:survey"]["min"] == 1
    assert elements["Observation.subject"]["min"] == 1
    assert elements["Observation.effective[x]"]["min"] == 1
    item = elements["Observation.component:item-4.value[x]"]
    assert (item["minValueInteger"], item["maxValueInteger"]) == (0, 6)
    assert elements["Observation.component:item-4"]["sliceName"] == "item-4"
    assert elements["Observation.component"]["slicing"]["discriminator"] == [
        {"type": "pattern", "path": "code"}
    ]


def test_mdma_profile_pins_unii_route_unit_and_context(m: Mappings) -> None:
    elements = _elements(_profile(m, "mdma-administration"))
    assert elements["MedicationAdministration.medication[x]"]["patternCodeableConcept"] == {
        "coding": [{"system": "http://fdasis.nlm.nih.gov", "code": "KE1SEN21RM"}]
    }
    assert elements["MedicationAdministration.context"]["min"] == 1
    assert elements["MedicationAdministration.dosage.dose"]["patternQuantity"] == {
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    assert (
        elements["MedicationAdministration.dosage.route"]["patternCodeableConcept"]["coding"][0][
            "code"
        ]
        == "26643006"
    )


def _observation(m: Mappings, instrument: str, delta: int = 0) -> dict[str, Any]:
    spec = m.instrument(instrument)
    values = {item.link_id: (item.min + item.max + 1) // 2 for item in spec.items}
    total = spec.score(values)
    assert total is not None
    return score_observation(
        spec, values, total + delta, subject="Patient/p1", effective="2023-03-01"
    )


@pytest.mark.parametrize("model", [None, models["r4"]], ids=["no-model", "r4-model"])
@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_invariants_hold_for_consistent_scores(m: Mappings, instrument: str, model: Any) -> None:
    sd = _profile(m, f"{instrument}-observation")
    assert _holds(sd, _observation(m, instrument), model) == [True, True]


@pytest.mark.parametrize("model", [None, models["r4"]], ids=["no-model", "r4-model"])
@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_total_invariant_fails_when_total_differs(m: Mappings, instrument: str, model: Any) -> None:
    sd = _profile(m, f"{instrument}-observation")
    spec = m.instrument(instrument)
    obs = _observation(m, instrument, delta=1 if instrument != "cssrs" else -1)
    assert _holds(sd, obs, model)[0] is False
    obs["valueQuantity"]["value"] = spec.total.max + 1
    assert _holds(sd, obs, model)[1] is False


def test_total_invariant_is_silent_when_items_are_missing(m: Mappings) -> None:
    sd = _profile(m, "madrs-observation")
    obs = _observation(m, "madrs", delta=5)
    obs["component"] = obs["component"][:9]
    assert _holds(sd, obs, None) == [True, True]


def test_sds_invariant_ignores_days_items(m: Mappings) -> None:
    spec = m.instrument("sds")
    values = {"1": 6, "2": 7, "3": 5, "days-lost": 2, "days-unproductive": 3}
    obs = score_observation(spec, values, 18, subject="Patient/p1", effective="2023-03-01")
    assert _holds(_profile(m, "sds-observation"), obs, models["r4"]) == [True, True]


def test_an_mdma_medication_states_its_strength_in_mg() -> None:
    unii = {"coding": [{"system": "http://fdasis.nlm.nih.gov", "code": "KE1SEN21RM"}]}
    medication = {
        "resourceType": "Medication",
        "code": unii,
        "ingredient": [
            {
                "itemCodeableConcept": unii,
                "strength": {
                    "numerator": {
                        "value": 0.12,
                        "system": "http://unitsofmeasure.org",
                        "code": "g",
                    },
                    "denominator": {"value": 1},
                },
            }
        ],
    }
    validator = load_trial().validator
    errors = [i for i in validator.validate(medication) if i.is_error]
    assert [i.expression for i in errors] == ["Medication.ingredient[0].strength.numerator"]
    medication["ingredient"][0]["strength"]["numerator"]["code"] = "mg"
    assert not [i for i in validator.validate(medication) if i.is_error]
