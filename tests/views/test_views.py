"""The view runner beyond the official suite: errors naming elements, streaming, keys, types."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.validation.fhirpath import compile_fhirpath
from fhir_bridge.views import ViewDefinition, run
from fhir_bridge.views.keys import reference_key
from fhir_bridge.views.paths import compile_path


def _observation(n: int, patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"system": "s", "code": "madrs-total"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 20 + n},
        "component": [
            {"code": {"coding": [{"system": "s", "code": f"madrs-{i}"}]}, "valueInteger": i}
            for i in range(1, 4)
        ],
    }


SCORES_LONG: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "scores_long",
    "status": "active",
    "resource": "Observation",
    "select": [
        {"column": [{"name": "patient", "path": "subject.getReferenceKey(Patient)"}]},
        {
            "forEach": "component",
            "column": [
                {"name": "code", "path": "code.coding.first().code", "type": "code"},
                {"name": "value", "path": "value.ofType(integer)", "type": "integer"},
            ],
        },
    ],
}


def _view(*columns: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resource": "Observation", "select": [{"column": list(columns)}], **extra}


def _error(view: Any, resources: list[dict[str, Any]] | None = None) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        list(run(view, resources or [_observation(1)]))
    return caught.value


def test_scores_long_yields_a_row_per_component_in_column_order() -> None:
    rows = list(run(SCORES_LONG, [_observation(1), {"resourceType": "Patient", "id": "p1"}]))
    assert rows == [
        {"patient": "p1", "code": "madrs-1", "value": 1},
        {"patient": "p1", "code": "madrs-2", "value": 2},
        {"patient": "p1", "code": "madrs-3", "value": 3},
    ]
    assert all(list(row) == ["patient", "code", "value"] for row in rows)


def test_rows_stream_before_the_next_resource_is_read() -> None:
    read: list[int] = []

    def resources() -> Iterator[dict[str, Any]]:
        for n in range(1_000_000):
            read.append(n)
            yield _observation(n)

    rows = run(SCORES_LONG, resources())
    assert next(rows)["code"] == "madrs-1"
    assert read == [0]


def test_a_checked_view_runs_again() -> None:
    view = ViewDefinition.parse(SCORES_LONG)
    assert view.columns == ("patient", "code", "value")
    assert len(list(run(view, [_observation(1)]))) == len(list(run(view, [_observation(2)]))) == 3


OBS = "Observation"
COLUMN = "ViewDefinition.select[0].column"
CONSTANT = "ViewDefinition.constant[0]"


@pytest.mark.parametrize(
    ("view", "expression"),
    [
        (_view({"name": "a", "path": "id"}, {"name": "b"}), f"{COLUMN}[1].path"),
        (_view({"name": "1a", "path": "id"}), f"{COLUMN}[0].name"),
        (_view({"name": "a", "path": "id", "collection": "yes"}), f"{COLUMN}[0].collection"),
        (_view({"name": "a", "path": "id", "type": "NoSuchType"}), f"{COLUMN}[0].type"),
        (_view({"name": "a", "path": "id"}, {"name": "a", "path": "status"}), f"{COLUMN}[1].name"),
        (_view({"name": "a", "path": "name.where("}), f"{COLUMN}[0].path"),
        (_view({"name": "a", "path": "%nope"}), f"{COLUMN}[0].path"),
        (_view({"name": "a", "path": "code.noSuchFunction()"}), f"{COLUMN}[0].path"),
        (_view({"name": "a", "path": "subject.getReferenceKey(Nothing)"}), f"{COLUMN}[0].path"),
        (
            {"resource": OBS, "select": [{"forEachOrNul": "component"}]},
            "ViewDefinition.select[0].forEachOrNul",
        ),
        (
            {"resource": OBS, "select": [{"forEach": "a", "repeat": ["b"]}]},
            "ViewDefinition.select[0]",
        ),
        ({"resource": OBS, "select": [{"repeat": []}]}, "ViewDefinition.select[0].repeat"),
        ({"resource": OBS, "select": []}, "ViewDefinition.select"),
        ({"resource": OBS, "select": {"column": []}}, "ViewDefinition.select"),
        ({"resource": "Nothing", "select": [{}]}, "ViewDefinition.resource"),
        ({"resource": OBS, "status": "live", "select": [{}]}, "ViewDefinition.status"),
        ({"resource": OBS, "where": [{}], "select": [{}]}, "ViewDefinition.where[0].path"),
        (_view(constant=[{"name": "c", "valueInteger": "1"}]), f"{CONSTANT}.valueInteger"),
        (
            _view(constant=[{"name": "c", "valueInteger": 1, "valueString": "1"}]),
            f"{CONSTANT}.value[x]",
        ),
        (_view(constant=[{"name": "c", "valueCoding": {}}]), f"{CONSTANT}.valueCoding"),
        (
            {"resourceType": "Patient", "resource": OBS, "select": [{}]},
            "ViewDefinition.resourceType",
        ),
        ([], "ViewDefinition"),
    ],
)
def test_structure_errors_name_the_element(view: Any, expression: str) -> None:
    error = _error(view)
    assert [issue.expression for issue in error.issues] == [expression]
    assert str(error).startswith(f"{expression}: ")


def test_union_branches_must_match_in_name_and_order() -> None:
    branches = [
        {"column": [{"name": "a", "path": "id"}]},
        {"column": [{"name": "b", "path": "id"}]},
    ]
    error = _error({"resource": "Observation", "select": [{"unionAll": branches}]})
    assert error.issues[0].expression == "ViewDefinition.select[0].unionAll[1]"


def test_a_where_path_that_is_not_boolean_is_an_error() -> None:
    error = _error({"resource": "Observation", "where": [{"path": "status"}], "select": [{}]})
    assert error.issues[0].expression == "ViewDefinition.where[0].path"


def test_many_values_in_a_column_that_is_no_collection_is_an_error() -> None:
    error = _error(_view({"name": "codes", "path": "component.code.coding.code"}))
    assert error.issues[0].expression == "ViewDefinition.select[0].column[0].path"
    assert "yields 3 values" in str(error)


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        ({"name": "v", "path": "id", "type": "integer"}, "is of type integer but yields str"),
        ({"name": "v", "path": "code"}, "a complex value needs a type"),
        ({"name": "v", "path": "status", "type": "CodeableConcept"}, "yields str"),
    ],
)
def test_values_must_be_of_the_column_type(column: dict[str, Any], reason: str) -> None:
    assert reason in str(_error(_view(column)))


def test_complex_values_come_out_with_a_column_type() -> None:
    rows = list(
        run(_view({"name": "code", "path": "code", "type": "CodeableConcept"}), [_observation(1)])
    )
    assert rows == [{"code": {"coding": [{"system": "s", "code": "madrs-total"}]}}]


@pytest.mark.parametrize(
    ("reference", "wanted", "key"),
    [
        ("Patient/p1", None, "p1"),
        ("Patient/p1", "Patient", "p1"),
        ("Patient/p1/_history/3", "Patient", "p1"),
        ("Group/p1", "Patient", None),
        ("http://example.org/fhir/Patient/p1", None, None),
        ("urn:uuid:0e7c8b8a-5b0e-4f57-9a0c-3b1f0a1d8f6e", None, None),
        ("#contained", None, None),
        ("Patient/p1/extra", None, None),
        ("Patient/", None, None),
        (42, None, None),
    ],
)
def test_reference_keys_are_ids_of_relative_references(
    reference: Any, wanted: str | None, key: str | None
) -> None:
    assert reference_key(reference, wanted) == key


def test_row_index_inside_where_is_that_of_each_row() -> None:
    # The same items filtered with a different %rowIndex each time: no stale memo.
    at_row = "%resource.component.where(valueInteger = %rowIndex + 1).code.coding.code"
    view = {
        "resource": "Observation",
        "select": [{"forEach": "component", "column": [{"name": "at", "path": at_row}]}],
    }
    assert [row["at"] for row in run(view, [_observation(1)])] == ["madrs-1", "madrs-2", "madrs-3"]


def test_choice_types_read_as_ofType_reads_them() -> None:
    columns = [
        {"name": "as_quantity", "path": "(value as Quantity).value", "type": "decimal"},
        {"name": "is_quantity", "path": "value is Quantity", "type": "boolean"},
        {"name": "is_string", "path": "value is string", "type": "boolean"},
        {"name": "quantity", "path": "value.ofType(Quantity).value", "type": "decimal"},
        {"name": "integer", "path": "value.ofType(integer)", "type": "integer"},
    ]
    rows = list(run(_view(*columns), [_observation(1)]))
    assert rows == [
        {
            "as_quantity": 21,
            "is_quantity": True,
            "is_string": False,
            "quantity": 21,
            "integer": None,
        }
    ]


def test_paths_beyond_the_compiler_run_on_fhirpathpy_with_constants_and_keys() -> None:
    columns = [
        {
            "name": "key",
            "path": "subject.getReferenceKey(Patient).upper() + %suffix",
            "type": "string",
        },
        {"name": "row", "path": "getResourceKey() & '-' & %rowIndex.toString()", "type": "string"},
    ]
    view = _view(*columns, constant=[{"name": "suffix", "valueString": "!"}])
    assert list(run(view, [_observation(7)])) == [{"key": "P1!", "row": "o7-0"}]


def test_arithmetic_and_boundaries() -> None:
    columns = [
        {"name": "half", "path": "value.ofType(Quantity).value / 2", "type": "decimal"},
        {"name": "low", "path": "value.ofType(Quantity).value.lowBoundary()", "type": "decimal"},
        {"name": "month_end", "path": "'2024-02'.highBoundary()", "type": "date"},
    ]
    assert list(run(_view(*columns), [_observation(1)])) == [
        {"half": 10.5, "low": 20.5, "month_end": "2024-02-29"}
    ]


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "name": [{"given": ["a", "b"], "family": "f"}, {"given": ["c"]}, {"family": "g"}],
    "contact": [{"name": {"family": "x"}}, {"telecom": [{"value": "1"}, {"value": "2"}]}],
    "deceasedBoolean": False,
}


@pytest.mark.parametrize(
    "path",
    [
        "name.first().given",
        "name.given.first()",
        "name.first().given.first()",
        "name.family.first()",
        "contact.telecom.first().value",
        "contact.first().telecom.value",
        "name.first().first().family",
        "deceased.first()",
        "Patient.name.first().family",
        "nothing.first().at.all",
    ],
)
def test_member_paths_with_first_agree_with_the_standard_compiler(path: str) -> None:
    env = {"resource": PATIENT, "rowIndex": 0}
    assert compile_path(path, {})([PATIENT], env) == compile_fhirpath(path)(PATIENT, env)
