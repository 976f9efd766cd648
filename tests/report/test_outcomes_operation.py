"""GET ResearchStudy/{id}/$outcomes: the outcome table as Parameters, computed in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from fhir_bridge.mapping import load_mappings
from fhir_bridge.report.files import ndjson_source
from fhir_bridge.services.report import outcomes
from tests.report.test_report_cli import without_keys

STUDY = "psykforsk-mat-mdd"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def as_parameters(value: Any) -> Any:
    """outcomes.json reshaped as the operation names it: camelCase keys, nulls left out."""
    if isinstance(value, dict):
        return {
            camel(k) if k.isidentifier() else k: as_parameters(v)
            for k, v in value.items()
            if v is not None
        }
    if isinstance(value, list):
        return [as_parameters(v) for v in value]
    return value


def read_parameters(parameters: list[dict[str, Any]], repeated: set[str]) -> dict[str, Any]:
    """Parameters back to nested data; a name in `repeated` is a list at this level."""
    out: dict[str, Any] = {}
    for p in parameters:
        if "part" in p:
            value: Any = read_parameters(p["part"], {"rises"})
        else:
            (value,) = [v for k, v in p.items() if k.startswith("value")]
        if p["name"] in repeated:
            out.setdefault(p["name"], []).append(value)
        else:
            out[p["name"]] = value
    return out


def test_outcomes_operation_gives_the_outcome_table_of_the_cohort(
    demo_client: TestClient, demo_export: Path
) -> None:
    response = demo_client.get(f"/fhir/ResearchStudy/{STUDY}/$outcomes")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "Parameters"
    assert body["parameter"][:2] == [
        {"name": "study", "valueReference": {"reference": f"ResearchStudy/{STUDY}"}},
        {"name": "cohort", "valueReference": {"reference": f"Group/cohort-{STUDY}"}},
    ]
    table = outcomes(ndjson_source(demo_export), load_mappings(), 10).outcomes
    lists = {camel(k) for k, v in table.items() if isinstance(v, list)}
    got = read_parameters(body["parameter"][2:], lists)
    expected = as_parameters(orjson.loads(orjson.dumps(table)))
    expected["suicidalIdeation"].setdefault("rises", [])
    got["suicidalIdeation"].setdefault("rises", [])
    assert without_keys(got) == without_keys(expected)
    (madrs,) = [
        s
        for s in got["scores"]
        if (s["population"], s["instrument"], s["visit"]) == ("all-available", "madrs", "baseline")
    ]
    assert madrs["n"] == 12


def test_outcomes_of_an_unknown_study_is_404(demo_client: TestClient) -> None:
    response = demo_client.get("/fhir/ResearchStudy/nope/$outcomes")
    assert response.status_code == 404
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "not-found",
                "diagnostics": "ResearchStudy/nope is not known",
            }
        ],
    }


def test_the_capability_statement_declares_the_outcomes_operation(demo_client: TestClient) -> None:
    statement = demo_client.get("/fhir/metadata").json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    declared = {op["name"]: op for op in by_type["ResearchStudy"]["operation"]}
    assert declared["outcomes"]["definition"] == (
        "https://fhir-bridge.org/fhir/OperationDefinition/ResearchStudy-outcomes"
    )
    assert "outcomes" not in {op["name"] for op in by_type["Observation"]["operation"]}
