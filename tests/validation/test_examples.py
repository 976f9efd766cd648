"""No false errors on a checked-in sample of the official R4 examples (CC0)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_bridge.validation import get_validator

EXAMPLES = sorted((Path(__file__).parent / "data" / "examples").glob("*.json"))


def test_sample_covers_every_supported_type() -> None:
    from fhir_bridge.domain.fhir import SUPPORTED_TYPES

    found = {orjson.loads(p.read_bytes())["resourceType"] for p in EXAMPLES}
    assert set(SUPPORTED_TYPES) <= found
    assert len(EXAMPLES) >= 40


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_official_example_has_no_errors(path: Path) -> None:
    issues = get_validator().validate(orjson.loads(path.read_bytes()))
    assert [i for i in issues if i.is_error] == []
