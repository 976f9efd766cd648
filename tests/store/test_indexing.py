"""Index extraction from the official R4 search parameter expressions."""

from __future__ import annotations

from typing import Any

from fhir_bridge.domain.search_values import date_range
from fhir_bridge.store.index_rows import (
    DateRow,
    NumberRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    URIRow,
)
from fhir_bridge.store.indexing import compiled_parameters, extract_index, last_updated_row

ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"


def madrs_total() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "meta": {
            "lastUpdated": "2025-03-04T10:00:00.5Z",
            "profile": ["https://fhir-bridge.org/fhir/StructureDefinition/madrs-observation"],
            "tag": [{"system": "https://fhir-bridge.org/fhir/CodeSystem/tag", "code": "trial"}],
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ],
        },
        "identifier": [{"system": "https://site.example/obs", "value": "A-1"}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                        "display": "Survey",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": ASSESSMENT, "code": "madrs-total", "display": "MADRS total score"}
            ],
            "text": "MADRS Total",
        },
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2025-03-04T09:30:00+01:00",
        "valueQuantity": {"value": 24, "system": "http://unitsofmeasure.org", "code": "{score}"},
        "derivedFrom": [{"reference": "QuestionnaireResponse/qr1"}],
        "hasMember": [{"reference": "Observation/i1"}],
        "component": [
            {"code": {"coding": [{"system": ASSESSMENT, "code": "madrs-1"}]}, "valueInteger": 3},
        ],
    }


def test_codeable_concept_gives_one_token_per_coding_and_one_for_text() -> None:
    rows = extract_index(madrs_total())
    code = [r for r in rows.tokens if r.param == "code"]
    assert code == [
        TokenRow("code", ASSESSMENT, "madrs-total", "madrs total score"),
        TokenRow("code", None, None, "madrs total"),
    ]


def test_concept_text_rides_on_a_coding_row_without_display() -> None:
    observation = madrs_total()
    observation["component"][0]["code"]["text"] = "Apparent sadness"
    rows = extract_index(observation)
    component = [r for r in rows.tokens if r.param == "component-code"]
    assert component == [TokenRow("component-code", ASSESSMENT, "madrs-1", "apparent sadness")]


def test_combo_code_is_answered_from_code_and_component_code_rows() -> None:
    rows = extract_index(madrs_total())
    assert not [r for r in rows.tokens if r.param.startswith("combo-")]
    code = {(r.system, r.code) for r in rows.tokens if r.param == "code"}
    assert (ASSESSMENT, "madrs-total") in code
    component = [(r.system, r.code) for r in rows.tokens if r.param == "component-code"]
    assert component == [(ASSESSMENT, "madrs-1")]


def test_subject_reference_to_patient_is_the_patient_parameters_row_too() -> None:
    rows = extract_index(madrs_total())
    refs = {(r.param, r.target_type, r.target_id) for r in rows.references}
    assert ("subject", "Patient", "p1") in refs
    # `patient` is `subject` narrowed to Patients: search reads the subject row
    assert not any(param == "patient" for param, _, _ in refs)
    assert ("encounter", "Encounter", "e1") in refs
    assert ("derived-from", "QuestionnaireResponse", "qr1") in refs
    assert ("has-member", "Observation", "i1") in refs


def test_patient_parameter_skips_subjects_that_are_not_patients() -> None:
    observation = {**madrs_total(), "subject": {"reference": "Group/g1"}}
    refs = {(r.param, r.target_type) for r in extract_index(observation).references}
    assert ("subject", "Group") in refs
    assert not any(param == "patient" for param, _ in refs)


def test_patient_parameter_keeps_a_row_when_only_the_type_element_names_patient() -> None:
    subject = {"reference": "urn:uuid:0d4f4cbe-1b8a-4a43-8e1b-6b8cbe1d6a4e", "type": "Patient"}
    observation = {**madrs_total(), "subject": subject}
    refs = {(r.param, r.target_type, r.url) for r in extract_index(observation).references}
    assert ("subject", None, subject["reference"]) in refs
    assert ("patient", None, subject["reference"]) in refs


def test_choice_element_date_keeps_its_precision_and_zone() -> None:
    rows = extract_index(madrs_total())
    low = date_range("2025-03-04T08:30:00Z")[0]
    assert DateRow("date", low, low + 1.0) in rows.dates


def test_period_without_end_is_open_ended() -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "in-progress",
        "class": {"code": "AMB"},
        "period": {"start": "2025-03-04"},
    }
    [row] = [r for r in extract_index(encounter).dates if r.param == "date"]
    assert row.low == date_range("2025-03-04")[0]
    assert row.high == 253402300800.0


def test_quantity_value_has_implicit_range_and_unit() -> None:
    rows = extract_index(madrs_total())
    assert (
        NumberRow("value-quantity", 24.0, 23.5, 24.5, "http://unitsofmeasure.org", "{score}")
        in rows.numbers
    )


def test_last_updated_is_the_stores_row_not_the_contents() -> None:
    # a client's meta.lastUpdated is replaced by the server's: the store adds that row
    assert not [r for r in extract_index(madrs_total()).dates if r.param == "_lastUpdated"]
    low = date_range("2025-03-04T10:00:00.5Z")[0]
    assert last_updated_row("2025-03-04T10:00:00.5Z") == DateRow("_lastUpdated", low, low + 0.1)


def test_meta_gives_profile_tag_and_security() -> None:
    rows = extract_index(madrs_total())
    assert (
        URIRow("_profile", "https://fhir-bridge.org/fhir/StructureDefinition/madrs-observation")
        in rows.uris
    )
    assert TokenRow("_tag", "https://fhir-bridge.org/fhir/CodeSystem/tag", "trial") in rows.tokens
    assert any(r.param == "_security" and r.code == "R" for r in rows.tokens)


def test_human_name_strings_are_normalised_with_exact_copies() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Ångström", "given": ["Eva", "Maria"]}],
    }
    rows = extract_index(patient)
    names = [r for r in rows.strings if r.param == "name"]
    assert names == [
        StringRow("name", "angstrom"),
        StringRow("name", "eva"),
        StringRow("name", "maria"),
    ]
    assert StringRow("name:exact", "Ångström") in rows.strings
    assert StringRow("family", "angstrom") in rows.strings
    assert StringRow("given", "maria") in rows.strings


def test_patient_tokens_for_gender_identifier_and_boolean() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "female",
        "active": True,
        "identifier": [{"system": "urn:oid:1.2", "value": "123"}],
        "telecom": [{"system": "email", "value": "eva@example.org"}],
    }
    tokens = {(r.param, r.system, r.code) for r in extract_index(patient).tokens}
    assert ("gender", None, "female") in tokens
    assert ("active", None, "true") in tokens
    assert ("identifier", "urn:oid:1.2", "123") in tokens
    assert ("email", None, "eva@example.org") in tokens
    assert not any(param == "phone" for param, _, _ in tokens)


def test_deceased_uses_the_fhirpath_fallback() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "deceasedDateTime": "2020-01-01"}
    tokens = {(r.param, r.code) for r in extract_index(patient).tokens}
    assert ("deceased", "true") in tokens
    fallback = [p.code for p in compiled_parameters("Patient") if p.fallback is not None]
    assert fallback == ["deceased"]


def test_medication_administration_medication_reference_and_code() -> None:
    administration = {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "status": "completed",
        "medicationReference": {"reference": "Medication/m1"},
        "subject": {"reference": "Patient/p1"},
        "context": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2025-03-04T09:00:00Z",
    }
    rows = extract_index(administration)
    refs = {(r.param, r.target_type, r.target_id) for r in rows.references}
    assert {
        ("medication", "Medication", "m1"),
        ("context", "Encounter", "e1"),
        ("subject", "Patient", "p1"),
    } <= refs
    assert [r.param for r in rows.dates] == ["effective-time"]
    coded = {
        **administration,
        "medicationCodeableConcept": {
            "coding": [{"system": "http://fdasis.nlm.nih.gov", "code": "KE1SEN21RM"}]
        },
    }
    del coded["medicationReference"]
    tokens = {(r.param, r.code) for r in extract_index(coded).tokens}
    assert ("code", "KE1SEN21RM") in tokens


def test_canonical_reference_is_indexed_by_url_with_and_without_version() -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "id": "qr1",
        "status": "completed",
        "questionnaire": "https://fhir-bridge.org/fhir/Questionnaire/madrs|1.0",
    }
    refs = [r for r in extract_index(response).references if r.param == "questionnaire"]
    assert refs == [
        ReferenceRow(
            "questionnaire", None, None, "https://fhir-bridge.org/fhir/Questionnaire/madrs"
        ),
        ReferenceRow(
            "questionnaire", None, None, "https://fhir-bridge.org/fhir/Questionnaire/madrs|1.0"
        ),
    ]


def test_an_absolute_reference_keeps_its_url_and_a_relative_one_its_type_and_id() -> None:
    subject = {
        "resourceType": "ResearchSubject",
        "id": "rs1",
        "status": "on-study",
        "study": {"reference": "http://other.example/fhir/ResearchStudy/s1"},
        "individual": {"reference": "Patient/p1/_history/2"},
    }
    refs = {(r.param, r.target_type, r.target_id, r.url) for r in extract_index(subject).references}
    assert ("study", None, None, "http://other.example/fhir/ResearchStudy/s1") in refs
    assert ("individual", "Patient", "p1", None) in refs


def test_invalid_dates_and_contained_references_are_not_indexed() -> None:
    observation = {
        **madrs_total(),
        "effectiveDateTime": "yesterday",
        "subject": {"reference": "#p"},
    }
    rows = extract_index(observation)
    assert not [r for r in rows.dates if r.param == "date"]
    assert not [r for r in rows.references if r.param == "subject"]


def test_content_reference_elements_are_followed() -> None:
    concept_map = {
        "resourceType": "ConceptMap",
        "id": "c",
        "status": "active",
        "group": [
            {
                "element": [
                    {
                        "code": "a",
                        "target": [
                            {
                                "code": "b",
                                "equivalence": "equal",
                                "product": [
                                    {"property": "https://fhir-bridge.org/fhir/p", "value": "1"}
                                ],
                            }
                        ],
                    }
                ]
            }
        ],
    }
    rows = extract_index(concept_map)
    assert URIRow("product", "https://fhir-bridge.org/fhir/p") in rows.uris
    assert TokenRow("target-code", None, "b") in rows.tokens


def test_a_repeated_concept_gives_the_same_rows_under_each_parameter() -> None:
    first, second = madrs_total(), madrs_total()
    assert extract_index(first).tokens == extract_index(second).tokens
    # the concept of `code` also appears as a component code: its rows carry that parameter
    second["component"][0]["code"] = second["code"]
    rows = extract_index(second)
    assert {r.param for r in rows.tokens if r.code == "madrs-total"} == {"code", "component-code"}


def test_a_remembered_concept_is_told_apart_by_display_and_text() -> None:
    seen, renamed = madrs_total(), madrs_total()
    extract_index(seen)  # remembered now
    renamed["code"]["coding"][0]["display"] = "Renamed display"
    renamed["code"]["text"] = "Renamed text"
    texts = {r.text for r in extract_index(renamed).tokens if r.param == "code"}
    assert texts == {"renamed display", "renamed text"}
