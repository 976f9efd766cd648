"""The HTTP edge of a real `fhir-bridge serve`: foreign hosts refused, HEAD, a clean log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ServerURL, running_server

FHIR = {"Content-Type": "application/fhir+json"}
ATTACKER = "rebind.attacker.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    folder = tmp_path_factory.mktemp("hardening")
    with running_server(f"sqlite:///{folder / 'fhir.db'}") as url:
        yield url


def test_server_refuses_a_write_from_a_foreign_host_and_stores_nothing(server: str) -> None:
    headers = {**FHIR, "Host": ATTACKER}
    refused = httpx.post(f"{server}/Patient", headers=headers, json={"resourceType": "Patient"})
    assert refused.status_code == 400
    assert refused.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": f"Host '{ATTACKER}' is not served here; "
                "FHIR_BRIDGE_ALLOWED_HOSTS lists the names",
            }
        ],
    }
    assert httpx.get(f"{server}/Patient?_summary=count").json()["total"] == 0


def test_server_answers_head_with_the_headers_of_get(server: str) -> None:
    get, head = httpx.get(f"{server}/metadata"), httpx.head(f"{server}/metadata")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["cache-control"] == "no-store"


def test_server_log_holds_no_token_and_no_query(tmp_path: Path) -> None:
    token = "eyJhbGciOiJFUzM4NCJ9.secret-token-material"
    mrn = "MRN-LOGGED-0042"
    with running_server(f"sqlite:///{tmp_path / 'fhir.db'}") as url:
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/Patient?identifier=mrn|{mrn}", headers=headers).status_code == 200
        assert httpx.get(f"{url}/Patient/{mrn}", headers=headers).status_code == 404
        assert httpx.get(f"{url}/Patient", headers={"Host": mrn}).status_code == 400
        url.process.terminate()
        url.process.wait(timeout=10)
        assert url.process.stderr is not None
        log = url.process.stderr.read().decode()
    assert "Application startup complete" in log  # the log was captured
    assert token not in log and mrn not in log
