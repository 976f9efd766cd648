"""Writes made ready before the write lock: a resource's JSON around its version stamp and
its search index rows as the index tables store them (store/schema.py).

Text that index B-trees hold, or that is compared with it, is stored `indexed()`, bounded;
store/search.py looks it up alike. Token values are grouped per parameter into sets, stored
once each (token_set_member) and shared by every resource with the same values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from fhir_bridge.domain.fhir_json import dumps
from fhir_bridge.domain.search_values import indexed
from fhir_bridge.store.base import Staged
from fhir_bridge.store.index_rows import IndexRows

Indexer = Callable[[dict[str, Any]], IndexRows]

TOKEN_SETS = "idx_token_set"  # tokens: one row per parameter, its values in token_set_member
Member = tuple[str | None, str | None, str | None]  # system, code, text as stored
# Token sets already hashed in this process, by their members (trial data repeats them)
_SETS: dict[tuple[Member, ...], tuple[int, list[tuple[Any, ...]]]] = {}
_SETS_LIMIT = 65536


def stage(resource: dict[str, Any], indexer: Indexer) -> Staged:
    """Serialise `resource` around its version stamp and turn its index rows into the index
    tables' rows: all a write needs but the stamp, made before the write lock."""
    resource_type, resource_id = resource["resourceType"], resource["id"]
    meta = resource.get("meta") or {}
    kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
    # resourceType, id, meta first: the order readers expect when they skim a resource
    head = dumps({"resourceType": resource_type, "id": resource_id, "meta": kept})
    head = head[:-2] + (b"," if kept else b"")  # open inside meta
    rest = {k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}
    tail = b"}," + dumps(rest)[1:] if rest else b"}}"  # decimals as sent
    index = indexer(resource)
    rows = _value_rows(resource_type, resource_id, index)
    by_param: dict[str, dict[Member, None]] = {}
    for token in index.tokens:
        member = (indexed(token.system), indexed(token.code), token.text)
        by_param.setdefault(token.param, {})[member] = None
    tokens = token_stage(resource_type, resource_id, by_param)
    rows.update(tokens.rows)
    return Staged(resource_type, resource_id, head, tail, rows, tokens.sets)


def _value_rows(
    resource_type: str, resource_id: str, index: IndexRows
) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of every index table but the token sets, by table."""
    rt, rid = resource_type, resource_id
    rows: dict[str, list[tuple[Any, ...]]] = {}
    if index.strings:
        rows["idx_string"] = [(rt, rid, r.param, indexed(r.value)) for r in index.strings]
    if index.dates:
        rows["idx_date"] = [(rt, rid, r.param, r.low, r.high) for r in index.dates]
    if index.numbers:
        rows["idx_number"] = [
            (rt, rid, r.param, r.value, r.low, r.high, r.system, r.code) for r in index.numbers
        ]
    if index.references:
        rows["idx_reference"] = [
            (rt, rid, r.param, indexed(r.target_type), indexed(r.target_id), indexed(r.url))
            for r in index.references
        ]
    if index.uris:
        rows["idx_uri"] = [(rt, rid, r.param, indexed(r.value)) for r in index.uris]
    return rows


def token_stage(
    resource_type: str, resource_id: str, by_param: dict[str, dict[Member, None]]
) -> Staged:
    """The token set rows of a resource, from its token values by parameter (in order)."""
    rows: list[tuple[Any, ...]] = []
    sets: dict[int, list[tuple[Any, ...]]] = {}
    for param, members in by_param.items():
        set_id, member_rows = token_set(tuple(members))
        rows.append((resource_type, resource_id, param, set_id))
        sets[set_id] = member_rows
    return Staged(resource_type, resource_id, b"", b"", {TOKEN_SETS: rows} if rows else {}, sets)


def token_set(members: tuple[Member, ...]) -> tuple[int, list[tuple[Any, ...]]]:
    """The id of a set of token values (a signed 64-bit hash of its members in a canonical
    order, whatever order they came in) and its token_set_member rows."""
    known = _SETS.get(members)
    if known is None:
        canonical = sorted(members, key=_member_order)
        digest = hashlib.blake2b(orjson.dumps(canonical), digest_size=8).digest()
        set_id = int.from_bytes(digest, "big", signed=True)
        known = set_id, [(set_id, n, *member) for n, member in enumerate(canonical)]
        if len(_SETS) >= _SETS_LIMIT:
            _SETS.clear()
        _SETS[members] = known
    return known


def _member_order(member: Member) -> tuple[tuple[bool, str], ...]:
    return tuple((part is not None, part or "") for part in member)
