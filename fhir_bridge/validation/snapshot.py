"""Snapshot generation: a profile's differential merged onto its base type's snapshot.

https://hl7.org/fhir/R4/profiling.html#snapshot. Handles constraining existing elements,
slices (a copy of the sliced element and its children, ids `path:slice`), and differential
paths that reach into a datatype (the datatype's elements are unfolded first).
"""

from __future__ import annotations

import copy
import gzip
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from fhir_bridge.validation.definitions import DATA_FILE, SD_BASE

SNAPSHOT_FILE = DATA_FILE.parent / "r4-snapshots.json.gz"
# Keys of a differential element that are bookkeeping, not constraints to copy.
_SKIPPED = frozenset({"id", "path"})

Resolver = Callable[[str], list[dict[str, Any]] | None]


class SnapshotError(ValueError):
    """A differential that cannot be placed on its base (unknown path or base)."""


@lru_cache(maxsize=1)
def _core_snapshots() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = orjson.loads(
        gzip.decompress(SNAPSHOT_FILE.read_bytes())
    )
    return data


def core_snapshot(type_name: str) -> list[dict[str, Any]] | None:
    """A deep copy of the vendored snapshot elements of a core type, or None."""
    elements = _core_snapshots().get(type_name)
    return copy.deepcopy(elements) if elements is not None else None


def generate(sd: dict[str, Any], resolve: Resolver | None = None) -> dict[str, Any]:
    """Return a copy of `sd` with `snapshot.element` built from its differential.

    `resolve(url)` may return the snapshot elements of a non-core base profile.
    """
    base_url = sd.get("baseDefinition") or SD_BASE + str(sd.get("type"))
    base: list[dict[str, Any]] | None = None
    if resolve is not None:
        base = resolve(base_url)
    if base is None and base_url.startswith(SD_BASE):
        base = core_snapshot(base_url.removeprefix(SD_BASE))
    if base is None:
        raise SnapshotError(f"base definition {base_url} is not known")
    elements = [_with_id(e) for e in copy.deepcopy(base)]
    for diff in sd.get("differential", {}).get("element", []):
        _apply(elements, diff)
    out = dict(sd)
    out["snapshot"] = {"element": elements}
    return out


def _with_id(e: dict[str, Any]) -> dict[str, Any]:
    e.setdefault("id", e["path"])
    return e


def _diff_id(diff: dict[str, Any]) -> str:
    if "id" in diff:
        return str(diff["id"])
    path = str(diff["path"])
    return f"{path}:{diff['sliceName']}" if "sliceName" in diff else path


def _index(elements: list[dict[str, Any]], element_id: str) -> int | None:
    for i, e in enumerate(elements):
        if e["id"] == element_id:
            return i
    return None


def _subtree_end(elements: list[dict[str, Any]], start: int) -> int:
    """Index after the element at `start` and all its descendants and slices."""
    root = elements[start]["id"]
    end = start + 1
    while end < len(elements):
        other = elements[end]["id"]
        if not (other.startswith(root + ".") or other.startswith(root + ":")):
            break
        end += 1
    return end


def _apply(elements: list[dict[str, Any]], diff: dict[str, Any]) -> None:
    element_id = _diff_id(diff)
    i = _index(elements, element_id)
    if i is None:
        i = _make_room(elements, element_id)
    target = elements[i]
    for key, value in diff.items():
        if key in _SKIPPED:
            continue
        if key == "constraint":
            known = {c.get("key") for c in target.get("constraint", [])}
            target.setdefault("constraint", []).extend(
                c for c in value if c.get("key") not in known
            )
        else:
            target[key] = copy.deepcopy(value)


def _make_room(elements: list[dict[str, Any]], element_id: str) -> int:
    """Create the element `element_id` (a new slice or a datatype child) and return its index."""
    parent_id, _, last = element_id.rpartition(".")
    if ":" in last:
        sliced_id = f"{parent_id}.{last.split(':', 1)[0]}" if parent_id else last.split(":")[0]
        slice_name = last.split(":", 1)[1]
        if "/" in slice_name:  # re-slicing is not supported
            raise SnapshotError(f"re-slice {element_id} is not supported")
        j = _index(elements, sliced_id)
        if j is None:
            j = _make_room(elements, sliced_id)
        base_end = _subtree_end(elements, j)
        own = [e for e in elements[j:base_end] if ":" not in e["id"][len(sliced_id) :]]
        copies = []
        for e in copy.deepcopy(own):
            e["id"] = element_id + e["id"][len(sliced_id) :]
            copies.append(e)
        # A slice does not inherit the slicing definition of the element it slices.
        copies[0].pop("slicing", None)
        copies[0]["sliceName"] = slice_name
        elements[base_end:base_end] = copies
        return base_end
    if not parent_id:
        raise SnapshotError(f"element {element_id} is not in the base")
    p = _index(elements, parent_id)
    if p is None:
        p = _make_room(elements, parent_id)
    parent = elements[p]
    types = parent.get("type", [])
    if len(types) != 1:
        raise SnapshotError(f"cannot unfold {parent_id}: it needs exactly one type")
    children = core_snapshot(types[0]["code"])
    if children is None:
        raise SnapshotError(f"cannot unfold {parent_id}: type {types[0]['code']} unknown")
    base_path = children[0]["path"]
    unfolded = []
    for e in children[1:]:
        e["id"] = parent_id + e["id"][len(base_path) :]
        e["path"] = parent["path"] + e["path"][len(base_path) :]
        unfolded.append(e)
    end = _subtree_end(elements, p)
    if end != p + 1:
        raise SnapshotError(f"cannot unfold {parent_id}: it already has children")
    elements[p + 1 : p + 1] = unfolded
    i = _index(elements, element_id)
    if i is None:
        raise SnapshotError(f"element {element_id} is not in the base")
    return i
