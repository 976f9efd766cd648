"""Snapshot generation from differentials (https://hl7.org/fhir/R4/profiling.html#snapshot)."""

from __future__ import annotations

import pytest

from fhir_bridge.validation import get_validator
from fhir_bridge.validation.snapshot import SnapshotError
from tests.validation.corpus import profile_resources


def _profile(name: str) -> dict[str, object]:
    return next(r for r in profile_resources() if r.get("id") == name)


def _ids(sd: dict[str, object]) -> list[str]:
    return [e["id"] for e in sd["snapshot"]["element"]]  # type: ignore[index]


def test_snapshot_keeps_every_base_element_in_order() -> None:
    snapshot = get_validator().snapshot(_profile("test-score-observation"))
    ids = _ids(snapshot)
    assert ids[0] == "Observation"
    assert ids.index("Observation.status") < ids.index("Observation.code")
    assert "Observation.referenceRange.low" in ids


def test_slices_follow_their_sliced_element_with_children() -> None:
    ids = _ids(get_validator().snapshot(_profile("test-score-observation")))
    start = ids.index("Observation.component:item1")
    assert ids[start + 1] == "Observation.component:item1.id"
    assert "Observation.component:item1.code" in ids
    assert ids.index("Observation.component:item2") > ids.index("Observation.component:item1.code")
    assert ids.index("Observation.component.code") < start


def test_differential_constraints_are_merged_onto_the_base() -> None:
    elements = get_validator().snapshot(_profile("test-score-observation"))["snapshot"]["element"]
    root = elements[0]
    assert {"dom-2", "obs-6", "tst-1"} <= {c["key"] for c in root["constraint"]}
    value = next(e for e in elements if e["id"] == "Observation.value[x]")
    assert value["type"] == [{"code": "integer"}]
    assert value["maxValueInteger"] == 12
    assert value["definition"]  # carried from the base for publishing


def test_paths_into_a_datatype_unfold_it() -> None:
    elements = get_validator().snapshot(_profile("test-dose"))["snapshot"]["element"]
    ids = [e["id"] for e in elements]
    assert "MedicationAdministration.dosage.dose.value" in ids
    value = next(e for e in elements if e["id"] == "MedicationAdministration.dosage.dose.value")
    assert value["min"] == 1 and value["maxValueDecimal"] == 250
    assert value["path"] == "MedicationAdministration.dosage.dose.value"


def test_unknown_differential_path_is_an_error() -> None:
    sd = dict(_profile("test-dose"))
    sd["differential"] = {"element": [{"id": "MedicationAdministration.nope", "path": "x"}]}
    with pytest.raises(SnapshotError):
        get_validator().snapshot(sd)
