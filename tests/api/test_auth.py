"""SMART Backend Services on the app: tokens for real signed assertions, every refusal the
spec names, and the access rule of every route."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from fhir_bridge.api.app import ROUTERS
from fhir_bridge.api.auth import ANY, RULES
from fhir_bridge.domain.roles import ROLES
from tests.auth_support import Client, assertion, register, rsa_key, token_form

TOKEN_URL = "http://testserver/fhir/auth/token"


def _register(app: TestClient, role: str, **kwargs: Any) -> Client:
    return register(app.app.state.context.store, role, **kwargs)  # type: ignore[attr-defined]


def _token(app: TestClient, client: Client, scope: str = "system/*.rs") -> str:
    response = app.post("/fhir/auth/token", data=token_form(assertion(client, TOKEN_URL), scope))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _refused(app: TestClient, form: dict[str, str]) -> tuple[int, str]:
    response = app.post("/fhir/auth/token", data=form)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, str(response.json()["error"])


def test_metadata_is_readable_without_a_token_and_names_the_token_endpoint(
    secured: TestClient,
) -> None:
    statement = secured.get("/fhir/metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == TOKEN_URL


def test_smart_configuration_advertises_the_endpoint_algorithms_and_scopes(
    secured: TestClient,
) -> None:
    config = secured.get("/fhir/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == TOKEN_URL
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"ES384", "RS384"}
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert "system/*.rs" in config["scopes_supported"]


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_a_signed_assertion_gets_a_short_lived_token(secured: TestClient, alg: str) -> None:
    client = _register(secured, "ehr", alg=alg)
    response = secured.post(
        "/fhir/auth/token",
        data=token_form(assertion(client, TOKEN_URL), "system/Observation.cruds"),
    )
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "bearer"
    assert body["scope"] == "system/Observation.cruds"
    assert 0 < body["expires_in"] <= 300
    read = secured.get(
        "/fhir/Observation", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert read.status_code == 200


def test_v1_scopes_are_granted_as_asked(secured: TestClient) -> None:
    client = _register(secured, "validator")
    form = token_form(assertion(client, TOKEN_URL), "system/Questionnaire.read")
    answer = secured.post("/fhir/auth/token", data=form).json()
    assert answer["scope"] == "system/Questionnaire.read"
    headers = {"Authorization": f"Bearer {answer['access_token']}"}
    assert secured.get("/fhir/Questionnaire", headers=headers).status_code == 200
    assert secured.get("/fhir/ValueSet", headers=headers).status_code == 403


def test_an_unknown_client_is_refused(secured: TestClient) -> None:
    stranger = Client("no-such-client", _register(secured, "ehr").key)
    assert _refused(secured, token_form(assertion(stranger, TOKEN_URL))) == (401, "invalid_client")


def test_a_wrong_audience_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    signed = assertion(client, TOKEN_URL, aud="https://elsewhere.example/token")
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


def test_iss_other_than_sub_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    other = _register(secured, "ehr")
    signed = assertion(client, TOKEN_URL, iss=other.id)
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


def test_an_expired_assertion_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    signed = assertion(client, TOKEN_URL, exp=int(time.time()) - 600)
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


def test_an_assertion_valid_only_later_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    signed = assertion(client, TOKEN_URL, nbf=int(time.time()) + 600)
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


def test_an_assertion_living_over_five_minutes_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    signed = assertion(client, TOKEN_URL, exp=int(time.time()) + 3600)
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


def test_a_replayed_jti_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    signed = assertion(client, TOKEN_URL)
    assert secured.post("/fhir/auth/token", data=token_form(signed)).status_code == 200
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


def test_a_signature_by_another_key_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    impostor = _register(secured, "ehr")
    key = {**impostor.key, "kid": client.key["kid"]}  # claims the client's key id
    signed = assertion(client, TOKEN_URL, key=key)
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


@pytest.mark.parametrize("alg", ["HS256", "RS256", "none"])
def test_an_algorithm_not_allowed_is_refused(secured: TestClient, alg: str) -> None:
    client = _register(secured, "ehr")
    now = int(time.time())
    claims = {"iss": client.id, "sub": client.id, "aud": TOKEN_URL, "exp": now + 60, "jti": "x"}
    if alg == "RS256":
        signing: Any = jwt.PyJWK(rsa_key("k")[0], algorithm="RS256").key
    else:
        signing = None if alg == "none" else b"a shared secret of thirty-two bytes!"
    signed = jwt.encode(claims, signing, algorithm=alg)
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


def test_a_scope_beyond_the_role_is_refused(secured: TestClient) -> None:
    validator = _register(secured, "validator")
    signed = assertion(validator, TOKEN_URL)
    assert _refused(secured, token_form(signed, "system/*.cruds")) == (400, "invalid_scope")


def test_a_jku_other_than_the_registered_jwks_url_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    signed = assertion(client, TOKEN_URL, headers={"jku": "https://attacker.example/jwks"})
    assert _refused(secured, token_form(signed)) == (401, "invalid_client")


def test_a_grant_type_other_than_client_credentials_is_refused(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    form = {**token_form(assertion(client, TOKEN_URL)), "grant_type": "password"}
    assert _refused(secured, form) == (400, "unsupported_grant_type")


def test_an_expired_token_is_401(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    key = secured.app.state.tokens.key  # type: ignore[attr-defined]
    now = int(time.time())
    claims = {"sub": client.id, "scope": "system/*.rs", "iat": now - 900, "exp": now - 600}
    expired = jwt.encode(claims, key, algorithm="HS256")
    response = secured.get("/fhir/Patient", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["issue"][0]["diagnostics"]


def test_a_tampered_token_is_401(secured: TestClient) -> None:
    token = _token(secured, _register(secured, "researcher"))
    header, claims, signature = token.split(".")
    forged = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(claims).replace(b"system/*.rs", b"system/*.cruds")
    ).decode()
    response = secured.get(
        "/fhir/Patient", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"}
    )
    assert response.status_code == 401


def test_a_revoked_clients_token_is_401_at_once(secured: TestClient) -> None:
    from fhir_bridge.store import clients

    client = _register(secured, "ehr")
    token = _token(secured, client)
    store = secured.app.state.context.store  # type: ignore[attr-defined]
    with store.session(write=True) as session:
        clients.revoke_client(session, client.id, time.time())
    response = secured.get("/fhir/Observation", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def _routes() -> list[tuple[str, str]]:
    return sorted(
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    )


_EXAMPLE_PARAMS = {
    "resource_type": "Patient",
    "resource_id": "p1",
    "version_id": "1",
    "job_id": "abc",
    "name": "Patient-1.ndjson",
    "group_id": "g1",
    "study_id": "s1",
    "view_id": "v1",
}


def _url(path: str) -> str:
    return "/fhir" + path.format(**_EXAMPLE_PARAMS)


def _outsider(method: str, path: str) -> str:
    """A role the route's rule does not let in."""
    rule = RULES[(method, path)]
    if rule.roles != ANY:
        return next(role for role in ROLES if role not in rule.roles)
    return "validator"  # reaches no participant data and no ViewDefinition


@pytest.mark.parametrize("route", _routes(), ids=lambda r: f"{r[0]} {r[1] or '/'}")
def test_every_route_needs_a_token_and_the_right_role(
    secured: TestClient, route: tuple[str, str]
) -> None:
    method, path = route
    rule = RULES[route]
    response = secured.request(method, _url(path))
    if rule.public:
        assert response.status_code != 401
        return
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    outsider = _register(secured, _outsider(method, path))
    scope = "system/*.rs" if _outsider(method, path) != "ehr" else "system/*.cruds"
    headers = {"Authorization": f"Bearer {_token(secured, outsider, scope)}"}
    response = secured.request(method, _url(path), headers=headers)
    assert response.status_code == 403, response.text
    assert response.json()["issue"][0]["code"] == "forbidden"


def test_a_scope_narrower_than_the_role_limits_the_token(secured: TestClient) -> None:
    client = _register(secured, "ehr")
    token = _token(secured, client, "system/Observation.rs")
    headers = {"Authorization": f"Bearer {token}"}
    assert secured.get("/fhir/Observation", headers=headers).status_code == 200
    assert secured.get("/fhir/Patient", headers=headers).status_code == 403
    patient = {"resourceType": "Patient"}
    assert secured.post("/fhir/Patient", json=patient, headers=headers).status_code == 403


def test_a_researcher_may_not_search_through_includes(secured: TestClient) -> None:
    token = _token(secured, _register(secured, "researcher"))
    headers = {"Authorization": f"Bearer {token}"}
    ok = secured.get("/fhir/ResearchStudy", headers=headers)
    assert ok.status_code == 200
    for query in ("_revinclude=ResearchSubject:study", "_has:ResearchSubject:study:status=x"):
        response = secured.get(f"/fhir/ResearchStudy?{query}", headers=headers)
        assert response.status_code == 403, query


def test_an_export_job_is_read_only_by_the_client_that_asked(secured: TestClient) -> None:
    owner = {"Authorization": f"Bearer {_token(secured, _register(secured, 'researcher'))}"}
    other = {"Authorization": f"Bearer {_token(secured, _register(secured, 'researcher'))}"}
    kickoff = secured.get(
        "/fhir/$export?_type=Observation",
        headers={**owner, "Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    assert kickoff.status_code == 202
    status_url = kickoff.headers["content-location"].removeprefix("http://testserver")
    assert secured.get(status_url, headers=other).status_code == 403
    assert secured.get(status_url, headers=owner).status_code in (200, 202)


@pytest.mark.parametrize("scope", ["", "launch fhirUser", "system/UnknownResource.rs"])
def test_an_empty_or_unknown_scope_is_refused(secured: TestClient, scope: str) -> None:
    client = _register(secured, "researcher")
    signed = assertion(client, TOKEN_URL)
    assert _refused(secured, token_form(signed, scope)) == (400, "invalid_scope")


def test_an_ehr_exports_its_data_as_stored_but_never_the_audit_trail(
    secured: TestClient,
) -> None:
    ehr = {
        "Authorization": f"Bearer {_token(secured, _register(secured, 'ehr'), 'system/*.cruds')}"
    }
    kickoff = secured.get("/fhir/$export", headers={**ehr, "Prefer": "respond-async"})
    assert kickoff.status_code == 202
    refused = secured.get(
        "/fhir/$export?_type=AuditEvent", headers={**ehr, "Prefer": "respond-async"}
    )
    assert refused.status_code == 403
