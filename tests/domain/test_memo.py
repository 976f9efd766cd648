"""Memo: exact keys, bounded, and giving up on values that do not repeat."""

from __future__ import annotations

import threading

from fhir_bridge.domain.memo import (
    MAX_KEY_BYTES,
    SIZE,
    TRIAL,
    Budget,
    Memo,
    SharedKeys,
    plain_json,
)


def test_equal_values_share_a_key_and_different_ones_do_not() -> None:
    memo = Memo()
    key = memo.key({"system": "s", "code": "1"})
    assert key is not None
    memo.remember(key, "slice 1")
    assert memo.get(memo.key({"system": "s", "code": "1"})) == "slice 1"
    assert memo.get(memo.key({"system": "s", "code": 1})) is None
    assert memo.get(memo.key({"system": "s", "code": True})) is None


def test_local_references_and_unserialisable_values_get_no_key() -> None:
    memo = Memo()
    assert memo.key({"reference": "#p1"}) is None
    assert memo.key({"value": 2**70}) is None
    assert memo.key({"text": "x" * (MAX_KEY_BYTES + 1)}) is None


def test_a_memo_without_repeats_stops_looking_and_forget_starts_over() -> None:
    memo = Memo()
    for n in range(TRIAL):
        key = memo.key({"id": n})
        assert key is not None and memo.get(key) is None
    assert memo.key({"id": 0}) is None
    memo.forget()
    assert memo.key({"id": 0}) is not None


def test_a_memo_keeps_at_most_size_entries() -> None:
    memo = Memo()
    for n in range(SIZE + 10):
        memo.remember(str(n).encode())
    assert len(memo.passed) == SIZE
    memo.forget()


def test_memos_sharing_a_budget_keep_at_most_it_together() -> None:
    budget = Budget(1000)
    first, second = Memo(budget), Memo(budget)
    first.remember(b"a" * 600)
    second.remember(b"b" * 600)  # over the shared budget: not kept
    assert (len(first.passed), len(second.passed)) == (1, 0)
    first.forget()  # gives its bytes back
    second.remember(b"b" * 600)
    assert len(second.passed) == 1
    assert budget.spent == 600


def test_nan_and_infinity_get_no_key() -> None:
    # orjson writes them as null: they would share a key with a null
    memo = Memo()
    assert memo.key({"value": float("nan")}) is None
    assert memo.key({"value": float("inf")}) is None


def test_within_SharedKeys_a_value_is_serialised_once_for_every_memo() -> None:
    value = {"system": "s", "code": "1"}
    with SharedKeys():
        first = Memo().key(value)
        value["code"] = "2"  # the scope's promise broken on purpose: the first key is kept
        assert Memo().key(value) == first
    assert Memo().key(value) != first  # outside the scope keys follow the value


def test_plain_json_has_no_null_no_local_reference_and_no_escape() -> None:
    assert plain_json(b'{"subject": {"reference": "Patient/1"}, "valueInteger": 3}')
    assert not plain_json(b'{"valueInteger": null}')
    assert not plain_json(b'{"subject": {"reference": "#p1"}}')
    assert not plain_json(b'{"subject": {"reference": "\\u0023p1"}}')  # "#p1", escaped


def test_keys_of_values_from_plain_json_are_not_searched() -> None:
    local = {"reference": "#p1"}  # cannot come from plain JSON: shows the search is skipped
    with SharedKeys():
        assert Memo().key(local) is None
    with SharedKeys(plain=True):
        assert Memo().key(local) == b'{"reference":"#p1"}'


def test_a_shared_keys_scope_is_its_own_threads() -> None:
    # a server thread checks a request that is not plain while another is in a plain scope
    entered, plain_open, asked = threading.Event(), threading.Event(), threading.Event()
    found: list[bytes | None] = []

    def other_request() -> None:
        with SharedKeys():
            entered.set()
            plain_open.wait()
            found.append(Memo().key({"reference": "#x"}))
        asked.set()

    thread = threading.Thread(target=other_request)
    thread.start()
    entered.wait()
    with SharedKeys(plain=True):
        plain_open.set()
        asked.wait()
    thread.join()
    assert found == [None]
