"""Every request's cost is bounded: bodies, patches, searches and Bundles over budget are a fast
too-costly OperationOutcome, nothing is written, and work within budget stays linear."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}


def outcome(code: str, diagnostics: str, expression: str | None = None) -> dict[str, object]:
    issue: dict[str, object] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def patient_with_contained(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "contained": [
            {"resourceType": "Organization", "id": f"o{i}", "name": f"Clinic {i}"} for i in range(n)
        ],
        "generalPractitioner": [{"reference": f"#o{i}"} for i in range(n)],
    }


def test_a_body_with_too_many_contained_resources_is_a_413_and_nothing_is_stored(
    client: TestClient,
) -> None:
    r = client.post("/fhir/Patient", json=patient_with_contained(10_001), headers=FHIR)
    assert r.status_code == 413
    assert r.json() == outcome(
        "too-costly", "The body has more than 10000 contained resources", "Patient.contained"
    )
    assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 0


def test_validating_thousands_of_local_references_is_linear(client: TestClient) -> None:
    # n = 8,000 took 20 s when every `#` reference rescanned the contained list
    started = time.monotonic()
    r = client.post("/fhir/Patient/$validate", json=patient_with_contained(8_000), headers=FHIR)
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert [i for i in r.json()["issue"] if i["severity"] == "error"] == []
    assert elapsed < 5


def test_a_patch_that_doubles_the_document_is_refused_fast_and_nothing_changes(
    client: TestClient,
) -> None:
    # one add and 22 copies of /a into /a/- took 12.7 s under the write lock
    client.put("/fhir/Patient/p", json={"resourceType": "Patient", "id": "p"}, headers=FHIR)
    ops = [{"op": "add", "path": "/a", "value": [1]}]
    ops += [{"op": "copy", "from": "/a", "path": "/a/-"}] * 22
    started = time.monotonic()
    r = client.patch(
        "/fhir/Patient/p", json=ops, headers={"Content-Type": "application/json-patch+json"}
    )
    assert time.monotonic() - started < 5
    assert r.status_code == 413
    text = "Patch operation 21 (copy /a/-) would make the resource larger than 8388608 bytes"
    assert r.json() == outcome("too-costly", text, "[21]")
    assert client.get("/fhir/Patient/p").json()["meta"]["versionId"] == "1"
