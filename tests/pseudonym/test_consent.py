"""Consent and withdrawal: who is released, and up to which date."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fhir_bridge.pseudonym import (
    Participation,
    ResearchPolicy,
    after_cutoff,
    clinical_date,
    participation,
)

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"


def _consent(
    status: str = "active",
    provision: str | None = None,
    scope: str = "research",
    in_category: bool = False,
) -> dict[str, Any]:
    concept = {"coding": [{"system": CONSENT_SCOPE, "code": scope}]}
    consent: dict[str, Any] = {"resourceType": "Consent", "status": status}
    if in_category:
        consent["scope"] = {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]}
        consent["category"] = [{"text": "Informed consent"}, concept]
    else:
        consent["scope"] = concept
        consent["category"] = [{"text": "Informed consent"}]
    if provision is not None:
        consent["provision"] = {"type": provision}
    return consent


def _subject(status: str = "on-study", end: str | None = None) -> dict[str, Any]:
    period = {"start": "2022-11-28"} | ({"end": end} if end else {})
    return {"resourceType": "ResearchSubject", "status": status, "period": period}


def test_consent_without_withdrawal_includes_everything(policy: ResearchPolicy) -> None:
    assert participation([_subject()], [_consent()], policy) == Participation(True, None, None)


def test_research_consent_denied_excludes(policy: ResearchPolicy) -> None:
    result = participation([_subject()], [_consent(provision="deny")], policy)
    assert result == Participation(False, "consent-denied", None)


def test_research_category_counts_like_scope(policy: ResearchPolicy) -> None:
    result = participation([_subject()], [_consent(provision="deny", in_category=True)], policy)
    assert result == Participation(False, "consent-denied", None)


@pytest.mark.parametrize(
    "consent",
    [_consent(status="inactive", provision="deny"), _consent(provision="deny", scope="treatment")],
    ids=["inactive", "treatment-scope"],
)
def test_deny_outside_active_research_consent_does_not_exclude(
    policy: ResearchPolicy, consent: dict[str, Any]
) -> None:
    assert participation([_subject()], [consent], policy) == Participation(True, None, None)


def test_missing_consent_excludes_only_when_required(policy: ResearchPolicy) -> None:
    strict = dataclasses.replace(
        policy, consent=dataclasses.replace(policy.consent, require_consent=True)
    )
    assert [participation([_subject()], [], p) for p in (policy, strict)] == [
        Participation(True, None, None),
        Participation(False, "no-research-consent", None),
    ]


def test_withdrawn_until_withdrawal_cuts_off_at_period_end(policy: ResearchPolicy) -> None:
    subjects = [_subject("withdrawn", "2023-08-17"), _subject("withdrawn", "2023-05-02")]
    result = participation(subjects, [_consent()], policy)
    assert result == Participation(True, "withdrawn", "2023-05-02")


def test_withdrawn_without_end_is_excluded(policy: ResearchPolicy) -> None:
    result = participation([_subject("withdrawn")], [_consent()], policy)
    assert result == Participation(False, "withdrawn-without-end-date", None)


def test_withdrawn_under_exclude_policy_is_excluded(policy: ResearchPolicy) -> None:
    exclude = dataclasses.replace(policy, withdrawn="exclude")
    result = participation([_subject("withdrawn", "2023-08-17")], [_consent()], exclude)
    assert result == Participation(False, "withdrawn", None)


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            {
                "resourceType": "Observation",
                "effectivePeriod": {"start": "2023-01-09"},
                "issued": "2023-01-10T08:00:00Z",
            },
            "2023-01-09",
        ),
        ({"resourceType": "Observation", "issued": "2023-01-10T08:00:00Z"}, "2023-01-10T08:00:00Z"),
        (
            {"resourceType": "Encounter", "period": {"start": "2023-01-09T09:00:00+01:00"}},
            "2023-01-09T09:00:00+01:00",
        ),
        (
            {"resourceType": "MedicationAdministration", "effectiveDateTime": "2023-02-01"},
            "2023-02-01",
        ),
        ({"resourceType": "Procedure", "performedPeriod": {"start": "2023-02-01"}}, "2023-02-01"),
        ({"resourceType": "QuestionnaireResponse", "authored": "2023-01-09"}, "2023-01-09"),
        ({"resourceType": "AdverseEvent", "date": "2023-03-03"}, "2023-03-03"),
        ({"resourceType": "Consent", "dateTime": "2022-11-28"}, "2022-11-28"),
        ({"resourceType": "Patient", "birthDate": "1996-03-14"}, None),
        ({"resourceType": "ResearchSubject", "period": {"start": "2022-11-28"}}, None),
    ],
    ids=lambda v: v["resourceType"] if isinstance(v, dict) else None,
)
def test_clinical_date_per_type(resource: dict[str, Any], expected: str | None) -> None:
    assert clinical_date(resource) == expected


@pytest.mark.parametrize(
    ("effective", "cutoff", "after"),
    [
        ("2023-08-17T23:59:00+02:00", "2023-08-17", False),
        ("2023-08-18T00:01:00+02:00", "2023-08-17", True),
        ("2023-08-18", "2023-08-17T12:00:00+02:00", True),
        ("2023-08-17", "2023-08-17T12:00:00+02:00", False),
        ("2023-08-17T11:00:00Z", "2023-08-17T12:00:00+02:00", True),
        ("2023-08-17T09:00:00Z", "2023-08-17T12:00:00+02:00", False),
        ("2023-08", "2023-08-17", False),
        ("2023-09", "2023-08-17", True),
        ("2024", "2023-08-17", True),
    ],
)
def test_after_cutoff_compares_at_the_coarser_precision(
    effective: str, cutoff: str, after: bool
) -> None:
    observation = {"resourceType": "Observation", "effectiveDateTime": effective}
    assert after_cutoff(observation, cutoff) is after


def test_resource_without_clinical_date_is_never_after_cutoff() -> None:
    assert after_cutoff({"resourceType": "Patient"}, "2000-01-01") is False
