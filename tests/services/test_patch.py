"""JSON Patch application (RFC 6902) as the patch interaction uses it."""

from __future__ import annotations

import pytest

from fhir_bridge.domain import fhir_json
from fhir_bridge.domain.cost import Limits
from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import InvalidRequestError, PayloadTooLargeError, UnprocessableResourceError
from fhir_bridge.services.patch import apply_patch

PATIENT = {"resourceType": "Patient", "id": "p", "name": [{"family": "Hansen"}], "gender": "male"}


def test_add_replace_remove_move_copy_test() -> None:
    ops = [
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/name/-", "value": {"family": "Berg"}},
        {"op": "copy", "from": "/name/0", "path": "/name/0"},
        {"op": "move", "from": "/name/2", "path": "/contact"},
        {"op": "remove", "path": "/name/0"},
        {"op": "add", "path": "/birthDate", "value": "1980-01-01"},
    ]
    assert apply_patch(PATIENT, ops) == {
        "resourceType": "Patient",
        "id": "p",
        "name": [{"family": "Hansen"}],
        "gender": "female",
        "contact": {"family": "Berg"},
        "birthDate": "1980-01-01",
    }
    assert PATIENT["gender"] == "male"  # the input is not modified


def test_failed_test_operation_names_its_index() -> None:
    with pytest.raises(UnprocessableResourceError) as info:
        apply_patch(
            PATIENT,
            [
                {"op": "add", "path": "/a", "value": 1},
                {"op": "test", "path": "/gender", "value": "x"},
            ],
        )
    assert info.value.issues[0].expression == "[1]"


def test_malformed_operation_is_a_bad_request() -> None:
    with pytest.raises(InvalidRequestError):
        apply_patch(PATIENT, [{"op": "frobnicate", "path": "/gender"}])


def test_patch_cannot_change_the_id() -> None:
    with pytest.raises(UnprocessableResourceError, match="cannot change id"):
        apply_patch(PATIENT, [{"op": "replace", "path": "/id", "value": "q"}])


def test_negative_and_non_ascii_indexes_are_refused() -> None:
    for path in ("/name/-1/family", "/name/\u00b2/family", "/name/00/family"):
        with pytest.raises(UnprocessableResourceError):
            apply_patch(PATIENT, [{"op": "test", "path": path, "value": "Hansen"}])


def test_test_compares_json_values_true_is_not_one() -> None:
    active = {**PATIENT, "active": True, "multipleBirthInteger": 2}
    for path, value in (("/active", 1), ("/active", 1.0), ("/multipleBirthInteger", True)):
        with pytest.raises(UnprocessableResourceError):
            apply_patch(active, [{"op": "test", "path": path, "value": value}])
    apply_patch(active, [{"op": "test", "path": "/multipleBirthInteger", "value": 2.0}])


def test_a_patch_that_nests_too_deeply_to_store_is_refused() -> None:
    value: dict[str, object] = {"url": "http://x"}
    for _ in range(300):
        value = {"url": "http://x", "extension": [value]}
    with pytest.raises(InvalidRequestError, match="nested too deeply"):
        apply_patch(PATIENT, [{"op": "add", "path": "/extension", "value": [value]}])


def test_a_patch_with_too_many_operations_is_refused_before_any_applies() -> None:
    ops = [{"op": "test", "path": "/gender", "value": "male"}] * 4
    with pytest.raises(PayloadTooLargeError) as caught:
        apply_patch(PATIENT, ops, Limits(max_patch_operations=3))
    assert caught.value.issues == [
        Issue("error", "too-costly", "The patch has 4 operations; the limit is 3", "[3]")
    ]


def test_copies_that_double_a_document_are_refused_at_the_one_over_the_size_limit() -> None:
    ops = [{"op": "add", "path": "/a", "value": [1]}]
    ops += [{"op": "copy", "from": "/a", "path": "/a/-"}] * 22
    with pytest.raises(PayloadTooLargeError) as caught:
        apply_patch(PATIENT, ops, Limits(max_patch_bytes=1000))
    text = "Patch operation 8 (copy /a/-) would add more than 1000 bytes to the resource"
    assert caught.value.issues == [Issue("error", "too-costly", text, "[8]")]


def test_copied_decimals_keep_their_text_and_count_against_the_budget() -> None:
    doc = fhir_json.loads(b'{"resourceType":"Basic","id":"b","a":{"value":1.50}}')
    ops = [{"op": "copy", "from": "/a", "path": "/b"}]
    patched = apply_patch(doc, ops, Limits(max_patch_bytes=14))
    assert fhir_json.dumps(patched) == (
        b'{"resourceType":"Basic","id":"b","a":{"value":1.50},"b":{"value":1.50}}'
    )
    with pytest.raises(PayloadTooLargeError):
        apply_patch(doc, ops, Limits(max_patch_bytes=13))
