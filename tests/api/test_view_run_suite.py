"""Every case of the official SQL on FHIR v2 suite through `POST /fhir/$viewdefinition-run`,
its resources inline and `_format=json`: rows as the view runner's, errors as 4xx
OperationOutcomes. Inline resources never touch the store, so one SQLite app serves all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings
from tests.views.suite import assert_same_rows, cases


@pytest.fixture(scope="module")
def suite_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("suite")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'fhir.db'}",
        export_dir=str(folder / "exports"),
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client


def run_parameters(view: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "viewResource", "resource": view},
            *({"name": "resource", "resource": resource} for resource in resources),
            {"name": "_format", "valueCode": "json"},
        ],
    }


@pytest.mark.parametrize(("resources", "case"), cases())
def test_suite_case_through_the_operation(
    suite_client: TestClient, resources: list[dict[str, Any]], case: dict[str, Any]
) -> None:
    response = suite_client.post(
        "/fhir/$viewdefinition-run",
        json=run_parameters(case["view"], resources),
        headers={"Content-Type": "application/fhir+json"},
    )
    if case.get("expectError"):
        assert 400 <= response.status_code < 500, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "error"
        return
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    rows = response.json()
    if "expectColumns" in case:
        assert all(list(row) == case["expectColumns"] for row in rows)
    assert_same_rows(rows, case["expect"])
