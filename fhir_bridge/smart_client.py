"""The client side of SMART Backend Services: keys, signed assertions and an httpx Auth that
fetches and renews access tokens, used by the command line (and by anyone scripting it).

https://build.fhir.org/ig/HL7/smart-app-launch/backend-services.html#obtaining-an-access-token
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from fhir_bridge.errors import AuthenticationError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_SCOPE = "system/*.rs"


def new_key(kid: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new ES384 key pair: the private JWK (for the client) and the public JWKS (to
    register)."""
    private = ec.generate_private_key(ec.SECP384R1())
    kid = kid or uuid.uuid4().hex
    private_jwk = {**json.loads(ECAlgorithm.to_jwk(private)), "kid": kid, "alg": "ES384"}
    public_jwk = {k: v for k, v in private_jwk.items() if k != "d"}
    return private_jwk, {"keys": [{**public_jwk, "use": "sig", "key_ops": ["verify"]}]}


def read_private_key(path: Path) -> dict[str, Any]:
    """A private JWK from a file (a JWK, or a JWKS whose first key is private)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    key = data["keys"][0] if isinstance(data, dict) and "keys" in data else data
    if not isinstance(key, dict) or "d" not in key:
        raise AuthenticationError(f"{path} holds no private key")
    return key


def signed_assertion(client_id: str, private_jwk: dict[str, Any], token_url: str) -> str:
    """A client assertion for `token_url`, valid for five minutes (the spec's longest)."""
    alg = private_jwk.get("alg") or ("ES384" if private_jwk.get("kty") == "EC" else "RS384")
    key = jwt.PyJWK(private_jwk, algorithm=alg)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    headers = {"kid": private_jwk.get("kid"), "typ": "JWT"}
    return jwt.encode(claims, key.key, algorithm=alg, headers=headers)


def request_token(
    http: httpx.Client,
    token_url: str,
    client_id: str,
    private_jwk: dict[str, Any],
    scope: str = DEFAULT_SCOPE,
) -> dict[str, Any]:
    """The token response for a signed assertion; AuthenticationError with the server's
    OAuth error otherwise."""
    response = http.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed_assertion(client_id, private_jwk, token_url),
        },
    )
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        reason = (
            body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
        )
        raise AuthenticationError(f"The token endpoint {token_url} refused: {reason}")
    return body


class SMARTAuth(httpx.Auth):
    """Bearer tokens for every request, fetched from `{base}/auth/token` and renewed a minute
    before they expire (or once after a 401)."""

    def __init__(
        self, base_url: str, client_id: str, private_jwk: dict[str, Any], scope: str = DEFAULT_SCOPE
    ) -> None:
        self.token_url = f"{base_url.rstrip('/')}/auth/token"
        self.client_id = client_id
        self.private_jwk = private_jwk
        self.scope = scope
        self._token: str | None = None
        self._renew_at = 0.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None or time.monotonic() > self._renew_at:
            self._refresh()
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            self._refresh()
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request

    def _refresh(self) -> None:
        with httpx.Client(timeout=30.0) as http:
            body = request_token(http, self.token_url, self.client_id, self.private_jwk, self.scope)
        self._token = str(body["access_token"])
        self._renew_at = time.monotonic() + max(float(body.get("expires_in", 300)) - 60, 5)
