"""Malformed input of many kinds: each is a 4xx OperationOutcome, never a 500, nothing stored."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings

FHIR = {"Content-Type": "application/fhir+json"}


def outcome(code: str, diagnostics: str, expression: str | None = None) -> dict[str, object]:
    issue: dict[str, object] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


CASES = [
    pytest.param(
        "GET",
        "/fhir/Patient/x/y/z",
        {},
        b"",
        404,
        outcome("not-found", "No route for GET /fhir/Patient/x/y/z"),
        id="unknown-route",
    ),
    pytest.param(
        "PATCH",
        "/fhir/metadata",
        {},
        b"",
        405,
        outcome("not-supported", "PATCH is not allowed on /fhir/metadata"),
        id="wrong-method",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        FHIR,
        b'{"resourceType": "Patient",',
        400,
        None,
        id="malformed-json",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        {"Content-Type": "text/plain"},
        b"{}",
        415,
        outcome(
            "not-supported",
            "Content-Type 'text/plain' is not supported; send application/fhir+json",
        ),
        id="wrong-content-type",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        FHIR,
        b'{"resourceType": "Observation"}',
        400,
        outcome(
            "invalid",
            "resourceType 'Observation' does not match the URL type 'Patient'",
            "resourceType",
        ),
        id="type-mismatch",
    ),
    pytest.param(
        "PUT",
        "/fhir/Patient/a",
        FHIR,
        b'{"resourceType": "Patient", "id": "b"}',
        400,
        outcome("invalid", "id 'b' does not match the URL id 'a'", "Patient.id"),
        id="id-mismatch",
    ),
    pytest.param(
        "PUT",
        "/fhir/Patient/a",
        FHIR,
        b'{"resourceType": "Patient"}',
        400,
        outcome("required", "An update must carry the id of the URL", "Patient.id"),
        id="id-missing-on-update",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        FHIR,
        b"[1, 2]",
        400,
        outcome("structure", "The request body must be a JSON object"),
        id="body-not-object",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        FHIR,
        b"",
        400,
        outcome("required", "The request body is empty"),
        id="empty-body",
    ),
    pytest.param(
        "POST",
        "/fhir/Basic",
        FHIR,
        b'{"resourceType": "Basic"}',
        404,
        outcome("not-supported", "Resource type 'Basic' is not supported by this server"),
        id="unsupported-type",
    ),
    pytest.param(
        "PUT",
        "/fhir/Patient?identifier=x|y",
        FHIR,
        b'{"resourceType": "Patient", "id": 5}',
        400,
        outcome("value", "id must be a string", "Patient.id"),
        id="id-not-a-string",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        FHIR,
        b'{"resourceType": "Patient", "gender": "a\\u0000b"}',
        400,
        outcome("value", "Strings must not contain the NUL character"),
        id="nul-in-body",
    ),
    pytest.param(
        "POST",
        "/fhir",
        FHIR,
        b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": "a\\u0000b"}]}',
        400,
        outcome("value", "Strings must not contain the NUL character"),
        id="nul-in-bundle",
    ),
    pytest.param(
        "POST",
        "/fhir",
        FHIR,
        b"",
        400,
        outcome("required", "The request body is empty"),
        id="empty-bundle-body",
    ),
    pytest.param(
        "GET",
        "/fhir/Patient?name=%00",
        {},
        b"",
        400,
        outcome("invalid", "Search parameters must not contain the NUL character", "name"),
        id="nul-in-search",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        FHIR,
        b'{"resourceType": "Patient", "extension": '
        + b'[{"url": "http://x", "extension": ' * 400
        + b"[]"
        + b"}]" * 400
        + b"}",
        400,
        None,
        id="deeply-nested",
    ),
    pytest.param(
        "GET",
        "/fhir/Patient/a/_history/%C2%B2",
        {},
        b"",
        404,
        None,
        id="non-ascii-version",
    ),
    pytest.param(
        "GET",
        "/fhir/Patient?_count=%C2%B2",
        {},
        b"",
        400,
        None,
        id="non-ascii-count",
    ),
    pytest.param(
        "GET",
        "/fhir/Patient?_offset=9223372036854775808",
        {},
        b"",
        400,
        None,
        id="huge-offset",
    ),
    pytest.param(
        "GET",
        "/fhir/_history?_cursor=99999999999999999999",
        {},
        b"",
        400,
        None,
        id="huge-history-cursor",
    ),
    pytest.param(
        "GET",
        "/fhir/_history?_since=yesterday",
        {},
        b"",
        400,
        outcome("invalid", "_since 'yesterday' is not a date", "_since"),
        id="bad-since",
    ),
    pytest.param(
        "GET",
        "/fhir/Patient/a?_format=xml",
        {},
        b"",
        406,
        outcome("not-supported", "_format 'xml' is not supported; use json"),
        id="xml-format",
    ),
    pytest.param(
        "GET",
        "/fhir/Patient/a",
        {"Accept": "application/fhir+xml"},
        b"",
        406,
        outcome(
            "not-supported",
            "Cannot produce 'application/fhir+xml'; this server speaks FHIR JSON",
        ),
        id="xml-accept",
    ),
    pytest.param(
        "PUT",
        "/fhir/Patient/a",
        {**FHIR, "If-Match": "banana"},
        b'{"resourceType": "Patient", "id": "a"}',
        400,
        outcome("value", "If-Match 'banana' is not a version ETag"),
        id="bad-if-match",
    ),
    pytest.param(
        "PUT",
        "/fhir/Patient/a$b",
        FHIR,
        b'{"resourceType": "Patient", "id": "a$b"}',
        400,
        outcome(
            "value",
            "'a$b' is not a valid FHIR id: 1-64 of A-Z a-z 0-9 - . and not . or ..",
            "Patient.id",
        ),
        id="bad-id",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        FHIR,
        b'{"resourceType": "Patient", "gender": 7}',
        422,
        None,
        id="wrong-primitive-type",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient",
        FHIR,
        b'{"resourceType": "Patient", "colour": "red"}',
        422,
        None,
        id="unknown-element",
    ),
    pytest.param(
        "POST",
        "/fhir/Observation",
        FHIR,
        b'{"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": '
        b'"https://fhir-bridge.org/fhir/CodeSystem/assessment", "code": "madrs-total"}]}, '
        b'"component": ["x", 5]}',
        422,
        None,
        id="score-components-not-objects",
    ),
    pytest.param(
        "GET",
        "/fhir/Patient/_history?_count=zero",
        {},
        b"",
        400,
        None,
        id="bad-count",
    ),
    pytest.param(
        "GET",
        "/fhir/_history?_since=9999-12-31T23:59:59-14:00",  # the year 10000 in UTC
        {},
        b"",
        400,
        None,
        id="since-beyond-year-9999",
    ),
    pytest.param(
        "POST",
        "/fhir",
        FHIR,
        b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"request": '
        b'{"method": "PUT", "url": "Patient?identifier=x"}, '
        b'"resource": {"resourceType": "Patient", "id": 5}}]}',
        400,
        outcome("invalid", "id must be a string", "Bundle.entry[0].resource.id"),
        id="bundle-put-id-not-a-string",
    ),
    pytest.param(
        "POST",
        "/fhir/Observation",
        FHIR,
        b'{"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": '
        b'["http://ehr.example.org/fhir/CodeSystem/local-assessment"], "code": {}}]}}',
        422,
        None,
        id="local-coding-of-wrong-types",
    ),
    pytest.param(
        "POST",
        "/fhir/Patient/$validate",
        FHIR,
        b'{"resourceType": "Parameters", "parameter": true}',
        400,
        outcome("invalid", "Parameters.parameter must be an array", "Parameters.parameter"),
        id="validate-parameter-not-an-array",
    ),
]


@pytest.mark.parametrize(("method", "url", "headers", "body", "status", "expected"), CASES)
def test_bad_input_is_a_4xx_outcome_and_stores_nothing(
    client: TestClient,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    expected: dict[str, object] | None,
) -> None:
    response = client.request(method, url, headers=headers, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    payload = response.json()
    assert payload["resourceType"] == "OperationOutcome"
    if expected is not None:
        assert payload == expected
    else:
        assert any(i["severity"] == "error" for i in payload["issue"])
    for resource_type in ("Patient", "Observation"):
        count = client.get(f"/fhir/{resource_type}/_history?_summary=count").json()["total"]
        assert count == 0


def test_unknown_element_names_its_path(client: TestClient) -> None:
    response = client.post(
        "/fhir/Patient", headers=FHIR, content=b'{"resourceType": "Patient", "colour": "red"}'
    )
    errors = [i for i in response.json()["issue"] if i["severity"] == "error"]
    assert [i["expression"] for i in errors] == [["Patient.colour"]]


def test_internal_error_hides_the_exception_text(settings: Settings) -> None:
    def explode(resource: dict[str, object]) -> list[object]:
        raise RuntimeError("secret patient detail")

    with TestClient(create_app(settings), raise_server_exceptions=False) as raw:
        raw.app.state.context.rules.append(explode)  # type: ignore[attr-defined]
        response = raw.post("/fhir/Patient", headers=FHIR, content=b'{"resourceType": "Patient"}')
    assert response.status_code == 500
    text = response.json()["issue"][0]["diagnostics"]
    assert "secret" not in text and text.startswith("Internal server error (request id ")


def test_wrong_method_names_the_allowed_ones(client: TestClient) -> None:
    response = client.request("PATCH", "/fhir/metadata")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
