"""The HTTP edge: host allow-list, security headers, HEAD, CORS, rate limits, redacted logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fhir_bridge.api.app import create_app
from fhir_bridge.api.hardening import (
    RedactingFormatter,
    SecurityHeaders,
    TokenBuckets,
    allowed_hosts,
    host_name,
    log_config,
)
from fhir_bridge.config import Settings

FHIR = {"Content-Type": "application/fhir+json"}
ATTACKER = "rebind.attacker.example"
ORIGIN = "https://dashboard.example.org"
JSON_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def outcome(code: str, diagnostics: str) -> dict[str, object]:
    issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


@contextmanager
def make_client(
    tmp_path: Path, outer: Any = None, raise_server_exceptions: bool = True, **settings: Any
) -> Iterator[TestClient]:
    """A client of an app on SQLite (what is tested here happens before any store is used),
    with an `outer` middleware that runs before all of the app's."""
    configured = Settings(
        database_url=f"sqlite:///{tmp_path / 'fhir.db'}",
        export_dir=str(tmp_path / "exports"),
        **{"allowed_hosts": ["testserver"], **settings},
    )
    app = create_app(configured)
    if outer is not None:
        app.add_middleware(outer)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as client:
        yield client


def create_patient(client: TestClient) -> str:
    response = client.post("/fhir/Patient", headers=FHIR, json={"resourceType": "Patient"})
    assert response.status_code == 201
    patient_id: str = response.json()["id"]
    return patient_id


# Host allow-list


def test_unknown_host_is_refused_with_an_outcome(client: TestClient) -> None:
    response = client.get("/fhir/Patient", headers={"Host": ATTACKER})
    assert response.status_code == 400
    assert response.json() == outcome(
        "invalid",
        f"Host '{ATTACKER}' is not served here; FHIR_BRIDGE_ALLOWED_HOSTS lists the names",
    )


def test_write_from_an_unknown_host_stores_nothing(client: TestClient) -> None:
    headers = {**FHIR, "Host": ATTACKER}
    response = client.post("/fhir/Patient", headers=headers, json={"resourceType": "Patient"})
    assert response.status_code == 400
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_allowed_host_with_a_port_is_served_and_names_the_links(tmp_path: Path) -> None:
    with make_client(tmp_path, allowed_hosts=["fhir.example.org"]) as client:
        headers = {**FHIR, "Host": "fhir.example.org:8443"}
        response = client.post("/fhir/Patient", headers=headers, json={"resourceType": "Patient"})
    assert response.status_code == 201
    assert response.headers["location"].startswith("http://fhir.example.org:8443/fhir/Patient/")


def test_default_hosts_are_the_base_url_host_the_listen_address_and_loopback() -> None:
    settings = Settings(base_url="https://fhir.example.org/fhir", host="10.0.0.5")
    expected = {"fhir.example.org", "10.0.0.5", "localhost", "127.0.0.1", "::1"}
    assert allowed_hosts(settings) == expected


def test_listening_on_every_address_adds_no_host_name() -> None:
    assert allowed_hosts(Settings(host="0.0.0.0")) == {"localhost", "127.0.0.1", "::1"}


@pytest.mark.parametrize(
    "value", ["fhir.example.org, 10.0.0.5", '["fhir.example.org", "10.0.0.5"]']
)
def test_allowed_hosts_are_read_from_a_list_or_json(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_BRIDGE_ALLOWED_HOSTS", value)
    assert allowed_hosts(Settings()) == {"fhir.example.org", "10.0.0.5"}


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8080", "localhost"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("Example.ORG.", "example.org"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_host_name_drops_port_brackets_case_and_final_dot(header: str, name: str) -> None:
    assert host_name(header) == name


# Security headers


def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    with make_client(tmp_path, rate_limit_per_second=0.001, rate_limit_burst=5) as client:
        patient_id = create_patient(client)
        responses = {
            "read": client.get(f"/fhir/Patient/{patient_id}"),
            "not found": client.get("/fhir/Patient/nobody"),
            "refused host": client.get("/fhir/metadata", headers={"Host": ATTACKER}),
            "head": client.head("/fhir/metadata"),
            "last token": client.get("/fhir/metadata"),
            "throttled": client.get("/fhir/metadata"),
        }
    assert responses["throttled"].status_code == 429
    for name, response in responses.items():
        found = {header: response.headers.get(header) for header in JSON_HEADERS}
        assert found == JSON_HEADERS, name


def test_internal_error_carries_the_security_headers(tmp_path: Path) -> None:
    def explode(resource: dict[str, object]) -> list[object]:
        raise RuntimeError("secret patient detail")

    with make_client(tmp_path, raise_server_exceptions=False) as raw:
        raw.app.state.context.rules.append(explode)  # type: ignore[attr-defined]
        response = raw.post("/fhir/Patient", headers=FHIR, content=b'{"resourceType": "Patient"}')
    assert response.status_code == 500
    assert {header: response.headers.get(header) for header in JSON_HEADERS} == JSON_HEADERS


def test_read_keeps_last_modified_and_etag_under_no_store(client: TestClient) -> None:
    response = client.get(f"/fhir/Patient/{create_patient(client)}")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")


def test_html_may_show_inline_styles_and_images_and_nothing_else() -> None:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse("<p style='color: red'>report</p>")

    app = SecurityHeaders(Starlette(routes=[Route("/report", page)]))
    with TestClient(app) as client:
        response = client.get("/report")
    assert response.headers["content-security-policy"] == (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def test_no_html_documentation_pages_are_served(client: TestClient) -> None:
    assert [client.get(path).status_code for path in ("/docs", "/redoc")] == [404, 404]


# HEAD


def test_head_answers_as_get_without_a_body(client: TestClient) -> None:
    path = f"/fhir/Patient/{create_patient(client)}"
    get, head = client.get(path), client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    for header in ("etag", "last-modified", "content-type", "content-length"):
        assert head.headers[header] == get.headers[header], header


def test_head_of_a_missing_resource_is_404(client: TestClient) -> None:
    response = client.head("/fhir/Patient/nobody")
    assert (response.status_code, response.content) == (404, b"")


def test_head_where_there_is_no_get_is_405(client: TestClient) -> None:
    response = client.head("/fhir")  # the system endpoint takes POST only
    assert (response.status_code, response.headers["allow"]) == (405, "POST")


# CORS


def test_cors_is_off_without_configured_origins(client: TestClient) -> None:
    preflight = client.options(
        "/fhir/Patient",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    read = client.get("/fhir/metadata", headers={"Origin": ORIGIN})
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in read.headers


def test_configured_origin_may_send_fhir_headers_and_read_location(tmp_path: Path) -> None:
    with make_client(tmp_path, cors_origins=[ORIGIN]) as client:
        preflight = client.options(
            "/fhir/Patient",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Content-Type, If-None-Exist",
            },
        )
        created = client.post(
            "/fhir/Patient", headers={**FHIR, "Origin": ORIGIN}, json={"resourceType": "Patient"}
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert created.headers["access-control-allow-origin"] == ORIGIN
    exposed = created.headers["access-control-expose-headers"].split(", ")
    assert {"Location", "ETag", "Content-Location", "X-Progress", "Retry-After"} <= set(exposed)


def test_preflight_from_another_origin_is_refused_with_an_outcome(tmp_path: Path) -> None:
    with make_client(tmp_path, cors_origins=[ORIGIN]) as client:
        response = client.options(
            "/fhir/Patient",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert response.status_code == 400
    assert response.json() == outcome("invalid", "Disallowed CORS origin")


# Rate limits


def test_client_beyond_its_burst_gets_429_with_retry_after(tmp_path: Path) -> None:
    with make_client(tmp_path, rate_limit_per_second=0.5, rate_limit_burst=2) as client:
        statuses = [client.get("/fhir/metadata").status_code for _ in range(2)]
        refused = client.get("/fhir/metadata")
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"
    assert refused.json() == outcome(
        "throttled", "Too many requests from this client; retry after 2 s"
    )


def test_rate_limit_keys_on_the_authenticated_client(tmp_path: Path) -> None:
    def authenticate(app: Any) -> Any:
        # stands for authentication: it runs first and leaves the client id in the state
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                client_id = dict(scope["headers"]).get(b"x-client", b"").decode()
                scope.setdefault("state", {})["client_id"] = client_id
            await app(scope, receive, send)

        return middleware

    limits = {"rate_limit_per_second": 0.001, "rate_limit_burst": 1}
    with make_client(tmp_path, outer=authenticate, **limits) as client:
        statuses = [
            client.get("/fhir/metadata", headers={"X-Client": name}).status_code
            for name in ("ehr-1", "ehr-1", "researcher-1")
        ]
    assert statuses == [200, 429, 200]


def test_rate_limit_of_zero_is_off(tmp_path: Path) -> None:
    with make_client(tmp_path, rate_limit_per_second=0, rate_limit_burst=1) as client:
        statuses = {client.get("/fhir/metadata").status_code for _ in range(5)}
    assert statuses == {200}


def test_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=1, clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.5]
    now[0] = 0.5
    assert buckets.take("a") == 0.0


def test_buckets_keep_the_most_recently_used_keys_only() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=2, clock=lambda: now[0])
    buckets.take("a")
    buckets.take("b")
    buckets.take("a")  # "a" is now the most recent: "b" goes when "c" comes
    buckets.take("c")
    assert len(buckets) == 2
    assert (buckets.take("a"), buckets.take("b")) == (1.0, 0.0)


# Logs


def test_internal_error_log_withholds_the_exception_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(resource: dict[str, object]) -> list[object]:
        try:
            raise ValueError("INSERT INTO resources VALUES ('MRN-12345')")
        except ValueError as exc:
            raise RuntimeError("secret patient detail") from exc

    with make_client(tmp_path, raise_server_exceptions=False) as raw:
        raw.app.state.context.rules.append(explode)  # type: ignore[attr-defined]
        with caplog.at_level(logging.ERROR, logger="fhir_bridge.api"):
            raw.post("/fhir/Patient", headers=FHIR, content=b'{"resourceType": "Patient"}')
    [record] = [r for r in caplog.records if r.name == "fhir_bridge.api"]
    logged = RedactingFormatter("%(message)s").format(record)
    assert "secret" not in logged and "MRN-12345" not in logged
    assert "builtins.ValueError (message withheld)" in logged
    assert "builtins.RuntimeError (message withheld)" in logged
    assert "in explode" in logged  # the frames stay: the log still shows where it failed


def test_serve_logs_the_server_and_the_application_through_the_redacting_formatter() -> None:
    config = log_config()
    for logger in ("uvicorn", "fhir_bridge"):
        for handler in config["loggers"][logger]["handlers"]:
            formatter = config["formatters"][config["handlers"][handler]["formatter"]]
            assert formatter["()"] == "fhir_bridge.api.hardening.RedactingFormatter", logger
