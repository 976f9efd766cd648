"""Server-assigned ids (services/resources.py)."""

from __future__ import annotations

import re
import uuid

from fhir_bridge.services.resources import new_id

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def test_new_ids_are_uuid7_in_creation_order() -> None:
    ids = [new_id() for _ in range(2000)]
    assert all(FHIR_ID.fullmatch(i) for i in ids)
    assert all(str(uuid.UUID(i)) == i for i in ids)  # canonical form
    assert {uuid.UUID(i).version for i in ids} == {7}
    assert {uuid.UUID(i).variant for i in ids} == {uuid.RFC_4122}
    assert len(set(ids)) == len(ids)
    # time-ordered: a later id never sorts before an earlier one by more than the sub-
    # millisecond clock step, and the millisecond prefix never goes back
    prefixes = [i[:13] for i in ids]
    assert prefixes == sorted(prefixes)
