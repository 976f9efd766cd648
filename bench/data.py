"""Synthetic MADRS score Observations for the bench scripts (valid against the project profile)."""

from __future__ import annotations

import random
from typing import Any

ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"
ITEMS = (
    "Apparent sadness",
    "Reported sadness",
    "Inner tension",
    "Reduced sleep",
    "Reduced appetite",
    "Concentration difficulties",
    "Lassitude",
    "Inability to feel",
    "Pessimistic thoughts",
    "Suicidal thoughts",
)


def madrs_observation(rng: random.Random, subject: str) -> dict[str, Any]:
    items = [rng.randint(0, 6) for _ in ITEMS]
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": ASSESSMENT, "code": "madrs-total"}], "text": "MADRS"},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
        "valueQuantity": {
            "value": sum(items),
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
        "component": [
            {
                "code": {"coding": [{"system": ASSESSMENT, "code": f"madrs-{n}"}], "text": text},
                "valueInteger": value,
            }
            for n, (text, value) in enumerate(zip(ITEMS, items, strict=True), start=1)
        ],
    }
