"""The recorded list of corpus mutations that fhir.resources R4B accepts matches a fresh run."""

from __future__ import annotations

import warnings
from pathlib import Path

from tests.validation.corpus import fhir_resources_misses

GAPS = Path(__file__).parent / "fhir_resources_gaps.md"


def test_recorded_fhir_resources_gaps_match_measurement() -> None:
    recorded = [
        line.removeprefix("- ")
        for line in GAPS.read_text(encoding="utf-8").splitlines()
        if line.startswith("- ")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the models warn on some broken inputs
        measured = fhir_resources_misses()
    assert measured == recorded
    assert len(measured) > 50
