"""The research view: identifiers removed, keyed pseudonyms, references kept resolvable, dates
shifted with their intervals, precision and time zones intact."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import re
from datetime import date, datetime, timedelta
from typing import Any

import orjson
import pytest

from fhir_bridge.pseudonym import ResearchPolicy, ResearchView, shift_date
from tests.pseudonym.conftest import KEY

SECURITY = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
PSEUDED = {"system": SECURITY, "code": "PSEUDED"}
REDACTED = {"system": SECURITY, "code": "REDACTED"}
STUDY_SUBJECT = "https://fhir-bridge.org/fhir/sid/study-subject"
MASKED = {
    "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}
    ]
}

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-7f3a",
    "meta": {
        "versionId": "3",
        "lastUpdated": "2024-05-02T08:15:00.123+02:00",
        "source": "http://ehr.example.org/feed/4711",
    },
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Kari Nordmann, born 1996-03-14</div>',
    },
    "identifier": [
        {"system": "http://ehr.example.org/fhir/sid/mrn", "value": "MRN-4711-0815"},
        {"system": STUDY_SUBJECT, "value": "MDD-07"},
    ],
    "name": [{"family": "Nordmann", "given": ["Kari"]}],
    "telecom": [{"system": "phone", "value": "+47 912 34 567"}],
    "gender": "female",
    "birthDate": "1996-03-14",
    "address": [{"line": ["Storgata 12"], "city": "Sarpsborg", "postalCode": "1706"}],
    "contact": [
        {
            "name": {"family": "Nordmann", "given": ["Ola"]},
            "telecom": [{"system": "phone", "value": "+47 987 65 432"}],
        }
    ],
    "generalPractitioner": [{"reference": "Practitioner/gp-55", "display": "Dr. Lege Hansen"}],
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "obs-9c1d",
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Kari felt better after the walk</div>',
    },
    "identifier": [{"system": "http://ehr.example.org/fhir/sid/obs", "value": "OBS-123456"}],
    "status": "final",
    "code": {"text": "Clinician comment"},
    "subject": {"reference": "Patient/pat-7f3a", "display": "Kari Nordmann"},
    "effectiveDateTime": "2023-03-01T09:30:00+01:00",
    "valueString": "Kari says her brother Ola in Sarpsborg helps her",
    "note": [{"authorString": "Dr. Lege Hansen", "text": "Call Kari at +47 912 34 567"}],
}

DIRECT_IDENTIFIERS = [
    "Kari",
    "Nordmann",
    "Ola",
    "+47 912 34 567",
    "+47 987 65 432",
    "Storgata",
    "Sarpsborg",
    "1706",
    "MRN-4711-0815",
    "OBS-123456",
    "1996-03-14",
    "Lege Hansen",
    "ehr.example.org",
    "felt better",
    "pat-7f3a",
    "obs-9c1d",
    "gp-55",
    "2023-03-01",
    "2024-05-02",
]


def _shifted(value: str, days: int) -> str:
    """`value` moved by `days`, computed with datetime rather than the code under test."""
    if len(value) == 10:
        return (date.fromisoformat(value) + timedelta(days=days)).isoformat()
    moved = datetime.fromisoformat(value) + timedelta(days=days)
    return moved.isoformat(timespec="milliseconds" if "." in value else "seconds")


def test_no_direct_identifier_survives_the_research_view(view: ResearchView) -> None:
    patient = view.apply(PATIENT, "pat-7f3a")
    observation = view.apply(OBSERVATION, "pat-7f3a")
    text = orjson.dumps([patient, observation]).decode()
    assert [s for s in DIRECT_IDENTIFIERS if s in text] == []
    assert observation["subject"] == {"reference": f"Patient/{patient['id']}"}


def test_patient_keeps_only_what_the_policy_allows(view: ResearchView) -> None:
    offset = view.date_offset_days("pat-7f3a")
    assert view.apply(PATIENT, "pat-7f3a") == {
        "resourceType": "Patient",
        "id": view.pseudonym("Patient", "pat-7f3a"),
        "meta": {
            "versionId": "3",
            "lastUpdated": _shifted("2024-05-02T08:15:00.123+02:00", offset),
            "security": [PSEUDED, REDACTED],
        },
        "identifier": [{"system": STUDY_SUBJECT, "value": "MDD-07"}],
        "gender": "female",
        "birthDate": _shifted("1996-03-14", offset)[:4],
        "generalPractitioner": [
            {"reference": f"Practitioner/{view.pseudonym('Practitioner', 'gp-55')}"}
        ],
    }


def test_observation_loses_narrative_note_free_text_and_identifiers(view: ResearchView) -> None:
    offset = view.date_offset_days("pat-7f3a")
    assert view.apply(OBSERVATION, "pat-7f3a") == {
        "resourceType": "Observation",
        "id": view.pseudonym("Observation", "obs-9c1d"),
        "status": "final",
        "code": {"text": "Clinician comment"},
        "subject": {"reference": f"Patient/{view.pseudonym('Patient', 'pat-7f3a')}"},
        "effectiveDateTime": _shifted("2023-03-01T09:30:00+01:00", offset),
        "meta": {"security": [PSEUDED, REDACTED]},
    }


def test_pseudonym_is_hmac_sha256_of_type_and_id_as_a_fhir_id(view: ResearchView) -> None:
    expected = hmac.new(KEY, b"Patient/pat-7f3a", hashlib.sha256).hexdigest()[:32]
    assert view.pseudonym("Patient", "pat-7f3a") == expected
    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", expected)


def test_same_key_gives_the_same_pseudonyms(policy: ResearchPolicy) -> None:
    first, second = ResearchView(policy, KEY), ResearchView(policy, KEY)
    assert first.apply(OBSERVATION, "pat-7f3a") == second.apply(OBSERVATION, "pat-7f3a")


def test_another_key_gives_other_pseudonyms_and_offsets(policy: ResearchPolicy) -> None:
    first, other = ResearchView(policy, KEY), ResearchView(policy, b"another-key-0123456789abcdef")
    ids = [f"p{n}" for n in range(50)]
    assert {first.pseudonym("Patient", i) for i in ids}.isdisjoint(
        {other.pseudonym("Patient", i) for i in ids}
    )
    assert [first.date_offset_days(i) for i in ids] != [other.date_offset_days(i) for i in ids]


def test_a_short_key_is_refused(policy: ResearchPolicy) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ResearchView(policy, b"short")


def test_input_is_not_changed(view: ResearchView) -> None:
    patient, observation = copy.deepcopy(PATIENT), copy.deepcopy(OBSERVATION)
    view.apply(patient, "pat-7f3a")
    view.apply(observation, "pat-7f3a")
    assert (patient, observation) == (PATIENT, OBSERVATION)


def test_intervals_of_one_participant_are_kept_exactly(view: ResearchView) -> None:
    # across the switch to summer time in Oslo: the offsets differ, the interval is 2 h
    times = ["2023-03-26T01:30:00+01:00", "2023-03-26T04:30:00+02:00", "2023-11-02T10:00:00Z"]
    days = ["2023-01-09", "2023-08-17"]
    out = [
        view.apply({**OBSERVATION, "effectiveDateTime": t}, "pat-7f3a")["effectiveDateTime"]
        for t in times
    ]
    period = view.apply(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "period": {"start": days[0], "end": days[1]},
        },
        "pat-7f3a",
    )["period"]

    def gaps(values: list[str]) -> list[timedelta]:
        moments = [datetime.fromisoformat(v) for v in values]
        return [b - a for a, b in zip(moments, moments[1:], strict=False)]

    assert gaps(out) == gaps(times)
    assert [v[19:] for v in out] == ["+01:00", "+02:00", "Z"]
    assert date.fromisoformat(period["end"]) - date.fromisoformat(period["start"]) == timedelta(
        days=220
    )


def test_dates_keep_precision_and_time_zone() -> None:
    assert [
        shift_date("2023-03-01", 10),
        shift_date("2023-03-25T23:30:00+01:00", -30),
        shift_date("2023-03-25T23:30:00.250Z", 7),
        shift_date("2023-12-31", 1),
    ] == ["2023-03-11", "2023-02-23T23:30:00+01:00", "2023-04-01T23:30:00.250Z", "2024-01-01"]


def test_year_and_month_move_with_their_middle_day() -> None:
    # a year's middle (2 July) stays in its year for any shift of up to 182 days
    assert [
        shift_date("2023", 182),
        shift_date("2023", -182),
        shift_date("2023", 400),
        shift_date("2023-03", 20),
        shift_date("2023-03", -10),
        shift_date("2023-03", -16),
    ] == ["2023", "2023", "2024", "2023-04", "2023-03", "2023-02"]


def test_malformed_dates_are_not_shifted() -> None:
    assert [shift_date(v, 1) for v in ("2023-13-01", "2023-03-01X10", "23", "2023-3")] == [
        None,
        None,
        None,
        None,
    ]


def test_shift_is_never_zero_and_within_the_policy(view: ResearchView) -> None:
    offsets = [view.date_offset_days(f"patient-{n}") for n in range(2000)]
    assert 0 not in offsets
    assert (min(offsets), max(offsets)) == (-182, 182)


def test_study_day_puts_enrolment_on_the_epoch(policy: ResearchPolicy) -> None:
    view = ResearchView(dataclasses.replace(policy, date_method="study-day"), KEY)
    observation = {**OBSERVATION, "effectiveDateTime": "2022-12-05T10:00:00+01:00"}
    out = view.apply(observation, "pat-7f3a", anchor="2022-11-28")
    assert out["effectiveDateTime"] == "2000-01-08T10:00:00+01:00"  # day 7 of the study
    assert view.date_offset_days("pat-7f3a", "2022-11-28T09:00:00+01:00") == -8367


def test_study_day_needs_the_anchor(policy: ResearchPolicy) -> None:
    view = ResearchView(dataclasses.replace(policy, date_method="study-day"), KEY)
    with pytest.raises(ValueError, match="anchor"):
        view.apply(OBSERVATION, "pat-7f3a")


def test_birth_year_moves_with_the_dates_so_age_is_kept(policy: ResearchPolicy) -> None:
    view = ResearchView(dataclasses.replace(policy, date_method="study-day"), KEY)
    patient = {
        "resourceType": "Patient",
        "birthDate": "1996-03-14",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1996-03-14T04:12:00+01:00",
                }
            ]
        },
    }
    # 26 at enrolment on 2022-11-28, which becomes 2000-01-01: born 1973
    assert view.apply(patient, "pat-7f3a", anchor="2022-11-28") == {
        "resourceType": "Patient",
        "birthDate": "1973",
        "meta": {"security": [PSEUDED, REDACTED]},
    }


def test_birth_date_of_a_participant_over_89_is_removed(view: ResearchView) -> None:
    # 90 on the day of enrolment
    patient = {"resourceType": "Patient", "gender": "male", "birthDate": "1932-11-28"}
    assert view.apply(patient, "pat-7f3a", anchor="2022-11-28") == {
        "resourceType": "Patient",
        "gender": "male",
        "meta": {"security": [PSEUDED, REDACTED]},
    }


def test_references_are_rewritten_kept_local_or_removed(view: ResearchView) -> None:
    administration = {
        "resourceType": "MedicationAdministration",
        "id": "ma-1",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med1",
                "identifier": [{"system": "http://pharmacy.example.org/batch", "value": "B-77"}],
                "code": {"text": "MDMA 120 mg"},
            }
        ],
        "status": "completed",
        "medicationReference": {"reference": "#med1"},
        "subject": {"reference": "Patient/pat-7f3a"},
        "context": {"reference": "Encounter/enc-2/_history/4"},
        "supportingInformation": [
            {"reference": "urn:uuid:0c3a3e9e-1d0c-4f7c-9d8e-6d8a5b7f2e11"},
            {"identifier": {"system": "http://ehr.example.org/fhir/sid/obs", "value": "1"}},
        ],
        "performer": [{"actor": {"reference": "https://other.example.org/fhir/Practitioner/x"}}],
        "effectivePeriod": {"start": "2023-02-01T10:00:00+01:00"},
    }
    offset = view.date_offset_days("pat-7f3a")
    assert view.apply(administration, "pat-7f3a") == {
        "resourceType": "MedicationAdministration",
        "id": view.pseudonym("MedicationAdministration", "ma-1"),
        "contained": [
            {"resourceType": "Medication", "id": "med1", "code": {"text": "MDMA 120 mg"}}
        ],
        "status": "completed",
        "medicationReference": {"reference": "#med1"},
        "subject": {"reference": f"Patient/{view.pseudonym('Patient', 'pat-7f3a')}"},
        "context": {"reference": f"Encounter/{view.pseudonym('Encounter', 'enc-2')}"},
        # performer.actor is required: a data-absent-reason stands in for it
        "performer": [{"actor": MASKED}],
        "effectivePeriod": {"start": _shifted("2023-02-01T10:00:00+01:00", offset)},
        "meta": {"security": [PSEUDED, REDACTED]},
    }


def test_extensions_are_treated_by_their_value_type(view: ResearchView) -> None:
    observation = {
        "resourceType": "Observation",
        "extension": [
            {"url": "http://example.org/visit-date", "valueDateTime": "2023-03-01T09:30:00+01:00"},
            {"url": "http://example.org/rater", "valueReference": {"reference": "Practitioner/r1"}},
            {"url": "http://example.org/comment", "valueString": "Kari was late"},
        ],
        "status": "final",
        "code": {"text": "MADRS"},
        "_effectiveDateTime": {
            "extension": [{"url": "http://example.org/entered", "valueDate": "2023-03-02"}]
        },
    }
    offset = view.date_offset_days("pat-7f3a")
    assert view.apply(observation, "pat-7f3a") == {
        "resourceType": "Observation",
        "extension": [
            {
                "url": "http://example.org/visit-date",
                "valueDateTime": _shifted("2023-03-01T09:30:00+01:00", offset),
            },
            {
                "url": "http://example.org/rater",
                "valueReference": {
                    "reference": f"Practitioner/{view.pseudonym('Practitioner', 'r1')}"
                },
            },
        ],
        "status": "final",
        "code": {"text": "MADRS"},
        "_effectiveDateTime": {
            "extension": [
                {"url": "http://example.org/entered", "valueDate": _shifted("2023-03-02", offset)}
            ]
        },
        "meta": {"security": [PSEUDED, REDACTED]},
    }


def test_extension_deep_inside_a_codeable_concept_is_found(view: ResearchView) -> None:
    coding = {
        "system": "https://fhir-bridge.org/fhir/CodeSystem/assessment",
        "code": "madrs-1",
        "extension": [
            {"url": "http://example.org/scored-on", "valueDateTime": "2023-03-01T09:30:00+01:00"},
            {"url": "http://example.org/by", "valueReference": {"reference": "Practitioner/r1"}},
        ],
    }
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "MADRS"},
        "component": [{"code": {"coding": [coding]}, "valueInteger": 3}],
    }
    out = view.apply(observation, "pat-7f3a")
    offset = view.date_offset_days("pat-7f3a")
    assert out["component"][0]["code"]["coding"][0]["extension"] == [
        {
            "url": "http://example.org/scored-on",
            "valueDateTime": _shifted("2023-03-01T09:30:00+01:00", offset),
        },
        {
            "url": "http://example.org/by",
            "valueReference": {"reference": f"Practitioner/{view.pseudonym('Practitioner', 'r1')}"},
        },
    ]


def test_primitive_extension_deep_inside_a_codeable_concept_is_found(view: ResearchView) -> None:
    code = {
        "text": "MADRS",
        "_text": {"extension": [{"url": "http://example.org/asked-on", "valueDate": "2023-03-01"}]},
    }
    observation = {"resourceType": "Observation", "status": "final", "code": code}
    offset = view.date_offset_days("pat-7f3a")
    assert view.apply(observation, "pat-7f3a")["code"] == {
        "text": "MADRS",
        "_text": {
            "extension": [
                {"url": "http://example.org/asked-on", "valueDate": _shifted("2023-03-01", offset)}
            ]
        },
    }


def test_contained_resource_without_definition_is_removed_with_its_references(
    view: ResearchView,
) -> None:
    medication = {
        "resourceType": "Medication",
        "id": "med-1",
        "contained": [{"resourceType": "Substance", "id": "sub", "code": {"text": "MDMA"}}],
        "ingredient": [{"itemReference": {"reference": "#sub"}, "isActive": True}],
    }
    # ingredient.item[x] is required: a data-absent-reason stands in for the reference
    assert view.apply(medication, None) == {
        "resourceType": "Medication",
        "id": view.pseudonym("Medication", "med-1"),
        "ingredient": [{"itemReference": MASKED, "isActive": True}],
        "meta": {"security": [PSEUDED, REDACTED]},
    }


def test_bundle_entries_are_viewed_like_resources(view: ResearchView) -> None:
    bundle = {
        "resourceType": "Bundle",
        "id": "b-1",
        "type": "collection",
        "link": [{"relation": "self", "url": "http://server/fhir/Patient?identifier=mrn|4711"}],
        "entry": [
            {"fullUrl": "http://server/fhir/Patient/pat-7f3a", "resource": PATIENT},
            {"fullUrl": "http://server/fhir/Observation/obs-9c1d", "resource": OBSERVATION},
        ],
    }
    out = view.apply(bundle, "pat-7f3a")
    assert out["entry"] == [
        {"resource": view.apply(PATIENT, "pat-7f3a")},
        {"resource": view.apply(OBSERVATION, "pat-7f3a")},
    ]
    assert (out["id"], out["meta"]) == (
        view.pseudonym("Bundle", "b-1"),
        {"security": [PSEUDED, REDACTED]},
    )


def test_nothing_removed_is_labelled_pseudonymised_only(view: ResearchView) -> None:
    observation = {
        "resourceType": "Observation",
        "meta": {"security": [PSEUDED], "tag": [{"code": "HTEST"}]},
        "status": "final",
        "code": {"text": "MADRS"},
        "valueQuantity": {"value": 29},
    }
    assert view.apply(observation, "pat-7f3a") == {**observation}


def test_without_a_participant_dates_stay_and_ids_change(view: ResearchView) -> None:
    study = {
        "resourceType": "ResearchStudy",
        "id": "psykforsk-mat-mdd",
        "status": "completed",
        "period": {"start": "2023-01", "end": "2024-12-31"},
    }
    assert view.apply(study, None) == {
        **study,
        "id": view.pseudonym("ResearchStudy", "psykforsk-mat-mdd"),
        "meta": {"security": [PSEUDED]},
    }


def test_an_element_unknown_to_r4_is_removed(view: ResearchView) -> None:
    observation = {"resourceType": "Observation", "status": "final", "nickname": "Kari"}
    assert view.apply(observation, None) == {
        "resourceType": "Observation",
        "status": "final",
        "meta": {"security": [PSEUDED, REDACTED]},
    }


def test_excluded_types_are_refused(view: ResearchView) -> None:
    assert [view.releases(t) for t in ("Observation", "AuditEvent", "Basic")] == [
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="AuditEvent"):
        view.apply({"resourceType": "AuditEvent"}, None)
