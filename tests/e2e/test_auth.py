"""SMART Backend Services end to end: `serve --demo` with authentication on, its demo clients,
tokens from `fhir-bridge token`, and the command line's Bulk export as a researcher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth_support import seeded_identifiers
from tests.e2e.conftest import ServerURL, cli, running_server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Iterator[ServerURL]:
    folder = tmp_path_factory.mktemp("server")
    with running_server(
        f"sqlite:///{folder / 'fhir.db'}",
        demo=True,
        auth="enabled",
        demo_keys_dir=str(keys),
        export_dir=str(folder / "exports"),
    ) as url:
        yield url


def _token(url: str, keys: Path, role: str, scope: str = "system/*.rs") -> dict[str, str]:
    done = cli(
        "token",
        "--server",
        url,
        "--client",
        f"demo-{role}",
        "--key",
        str(keys / f"{role}.jwk"),
        "--scope",
        scope,
    )
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {done.stdout.strip()}"}


def test_demo_clients_get_tokens_from_the_command_line(secured: ServerURL, keys: Path) -> None:
    for role in ("ehr", "researcher", "validator", "admin"):
        assert (keys / f"{role}.jwk").stat().st_mode & 0o077 == 0  # the owner's only
        assert _token(secured, keys, role)["Authorization"].count(".") == 2


def test_without_a_token_nothing_but_discovery_answers(secured: ServerURL) -> None:
    assert httpx.get(f"{secured}/metadata").status_code == 200
    assert httpx.get(f"{secured}/.well-known/smart-configuration").status_code == 200
    assert httpx.get(f"{secured}/Patient").status_code == 401


def test_each_role_reaches_what_it_may_and_no_more(secured: ServerURL, keys: Path) -> None:
    ehr = _token(secured, keys, "ehr", "system/*.cruds")
    patient = {"resourceType": "Patient", "gender": "female"}
    assert httpx.post(f"{secured}/Patient", json=patient, headers=ehr).status_code == 201
    researcher = _token(secured, keys, "researcher")
    assert httpx.get(f"{secured}/Patient", headers=researcher).status_code == 403
    assert httpx.get(f"{secured}/ResearchStudy", headers=researcher).status_code == 200
    validator = _token(secured, keys, "validator")
    checked = httpx.post(f"{secured}/Patient/$validate", json=patient, headers=validator)
    assert checked.status_code == 200
    assert httpx.get(f"{secured}/Observation", headers=validator).status_code == 403
    admin = _token(secured, keys, "admin")
    assert httpx.get(f"{secured}/AuditEvent", headers=admin).status_code == 200
    assert httpx.get(f"{secured}/AuditEvent", headers=ehr).status_code == 403


def test_a_researchers_command_line_export_holds_no_identifier(
    secured: ServerURL, keys: Path, tmp_path: Path
) -> None:
    env = {
        "FHIR_BRIDGE_CLIENT_ID": "demo-researcher",
        "FHIR_BRIDGE_CLIENT_KEY": str(keys / "researcher.jwk"),
    }
    done = cli("export", "--server", secured, "--out", str(tmp_path), env=env)
    assert done.returncode == 0, done.stderr
    files = list(tmp_path.glob("*.ndjson"))
    assert any(f.name.startswith("Patient") for f in files)
    text = "".join(f.read_text() for f in files)
    assert sorted(v for v in seeded_identifiers() if v in text) == []


def test_the_command_line_without_credentials_is_told_to_authenticate(
    secured: ServerURL, tmp_path: Path
) -> None:
    done = cli("export", "--server", secured, "--out", str(tmp_path))
    assert done.returncode != 0
    assert "bearer token" in done.stderr
