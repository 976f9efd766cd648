"""Loading mappings/research-policy.json: its content, and errors that name the bad field."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fhir_bridge.errors import MappingSpecError
from fhir_bridge.pseudonym import ConsentRules, ResearchPolicy, load_policy
from fhir_bridge.pseudonym.policy import DEFAULT_PATH


def _write(tmp_path: Path, change: dict[str, Any]) -> Path:
    data = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    data.update(change)
    path = tmp_path / "research-policy.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _error(path: Path) -> tuple[str, str | None]:
    with pytest.raises(MappingSpecError) as caught:
        load_policy(path)
    [issue] = caught.value.issues
    return issue.diagnostics, issue.expression


def test_repository_policy_loads(policy: ResearchPolicy) -> None:
    assert (
        policy.date_method,
        policy.max_shift_days,
        policy.study_day_epoch,
        policy.birth_date,
        policy.max_age,
        policy.withdrawn,
        policy.consent,
        policy.exclude_resource_types,
    ) == (
        "shift",
        182,
        date(2000, 1, 1),
        "year",
        89,
        "until-withdrawal",
        ConsentRules(
            frozenset({("http://terminology.hl7.org/CodeSystem/consentscope", "research")}),
            False,
        ),
        frozenset({"AuditEvent"}),
    )


def test_repository_policy_removes_the_direct_identifiers(policy: ResearchPolicy) -> None:
    assert {"Patient.name", "Patient.telecom", "Patient.address", "Patient.photo"} <= (
        policy.remove_elements
    )
    assert {"Patient.contact", "Reference.display", "Reference.identifier"} <= (
        policy.remove_elements
    )
    assert {"Narrative", "Annotation"} <= policy.remove_types
    assert "https://fhir-bridge.org/fhir/sid/study-subject" in policy.keep_identifier_systems


def test_unknown_date_method_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, {"date_method": "weekly"})
    assert _error(path) == (
        "research-policy.json: date_method: 'weekly' is not one of shift, study-day",
        f"{path}:date_method",
    )


def test_unknown_element_names_type_and_path(tmp_path: Path) -> None:
    path = _write(tmp_path, {"remove_elements": {"Patient": ["nmae"]}})
    assert _error(path) == (
        "research-policy.json: remove_elements.Patient: Patient has no element 'nmae'",
        f"{path}:remove_elements.Patient",
    )


def test_wrong_type_of_value_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, {"max_shift_days": True})
    assert _error(path) == (
        "research-policy.json: max_shift_days: expected an integer, got bool",
        f"{path}:max_shift_days",
    )


def test_missing_consent_field_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, {"consent": {"research_codings": []}})
    assert _error(path) == (
        "research-policy.json: consent.research_codings: at least one coding is needed",
        f"{path}:consent.research_codings",
    )


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"birthdate": "year"})
    assert _error(path) == (
        "research-policy.json: birthdate: unknown field",
        f"{path}:birthdate",
    )


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "research-policy.json"
    path.write_text("{", encoding="utf-8")
    diagnostics, expression = _error(path)
    assert (diagnostics.startswith("research-policy.json: not readable JSON"), expression) == (
        True,
        str(path),
    )
