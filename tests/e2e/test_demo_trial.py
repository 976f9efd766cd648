"""The synthetic example trial loaded by `serve --demo`, queried over HTTP."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import running_server

ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"
VISIT = "https://fhir-bridge.org/fhir/CodeSystem/visit"


def count(base: str, resource_type: str, **params: str) -> int:
    response = httpx.get(f"{base}/{resource_type}", params={**params, "_summary": "count"})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def test_demo_trial_has_the_expected_counts_and_reloads_idempotently(database_url: str) -> None:
    for _ in range(2):  # the second start loads the same Bundles again: nothing may double
        with running_server(database_url, demo=True) as base:
            assert count(base, "Patient") == 12
            assert count(base, "Patient", gender="female") == 7
            assert count(base, "ResearchSubject") == 12
            assert count(base, "ResearchSubject", status="withdrawn") == 1
            assert count(base, "Consent", status="active") == 11
            assert count(base, "Consent", status="inactive") == 1
            # 11 completers x 2 dosing sessions x (initial + supplemental), the withdrawn
            # participant's single session x 2
            assert count(base, "MedicationAdministration") == 46
            assert count(base, "AdverseEvent") == 1
            for instrument in ("madrs", "sds"):
                per_visit = {
                    visit: count(
                        base,
                        "Observation",
                        code=f"{ASSESSMENT}|{instrument}-total",
                        **{"encounter:Encounter.type": f"{VISIT}|{visit}"},
                    )
                    for visit in ("baseline", "post-treatment", "follow-up-7m")
                }
                assert per_visit == {"baseline": 12, "post-treatment": 11, "follow-up-7m": 11}
            # one score Observation per scored response: none derived twice
            assert count(base, "Observation", code=f"{ASSESSMENT}|madrs-total") == count(
                base,
                "QuestionnaireResponse",
                questionnaire="https://fhir-bridge.org/fhir/Questionnaire/madrs",
            )
