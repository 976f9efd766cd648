"""Memo: exact keys, bounded, and giving up on values that do not repeat."""

from __future__ import annotations

from fhir_bridge.domain.memo import Memo


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
    assert memo.key({"text": "x" * (Memo.MAX_BYTES + 1)}) is None


def test_a_memo_without_repeats_stops_looking_and_forget_starts_over() -> None:
    memo = Memo()
    for n in range(Memo.TRIAL):
        key = memo.key({"id": n})
        assert key is not None and memo.get(key) is None
    assert memo.key({"id": 0}) is None
    memo.forget()
    assert memo.key({"id": 0}) is not None


def test_a_memo_keeps_at_most_size_entries() -> None:
    memo = Memo()
    for n in range(Memo.SIZE + 10):
        memo.remember(n)
    assert len(memo.passed) == Memo.SIZE
