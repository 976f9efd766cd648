"""Registered clients and signed assertions for the tests of authentication and authorization."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fhir_bridge.services import tokens
from fhir_bridge.smart_client import ASSERTION_TYPE, new_key
from fhir_bridge.store.base import ResourceStore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "trial"


@dataclass
class Client:
    id: str
    key: dict[str, Any]  # the private JWK
    alg: str = "ES384"


def rsa_key(kid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_jwk = {**json.loads(RSAAlgorithm.to_jwk(private)), "kid": kid, "alg": "RS384"}
    public = {k: v for k, v in private_jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    return private_jwk, {"keys": [public]}


def register(
    store: ResourceStore, role: str, *, site: str | None = None, alg: str = "ES384"
) -> Client:
    kid = uuid.uuid4().hex
    private, public = rsa_key(kid) if alg == "RS384" else new_key(kid)
    row = tokens.register(store, f"test {role}", role, site=site, jwks=public)
    return Client(row.id, private, alg)


def assertion(
    client: Client,
    token_url: str,
    *,
    headers: dict[str, Any] | None = None,
    key: dict[str, Any] | None = None,
    alg: str | None = None,
    **claims: Any,
) -> str:
    """A signed client assertion; `claims` replace the standard ones (None removes one)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": client.id,
        "sub": client.id,
        "aud": token_url,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    signing = jwt.PyJWK(key or client.key, algorithm=alg or client.alg)
    header = {"kid": (key or client.key).get("kid"), **(headers or {})}
    return jwt.encode(body, signing.key, algorithm=alg or client.alg, headers=header)


def token_form(signed: str, scope: str = "system/*.rs") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
    }


def seeded_identifiers() -> set[str]:
    """Every identifying value of the example trial's Patients: identifiers, names, birth
    dates, telecoms."""
    found: set[str] = set()
    for path in EXAMPLES.glob("*.json"):
        for entry in orjson.loads(path.read_bytes()).get("entry", []):
            patient = entry.get("resource", {})
            if patient.get("resourceType") != "Patient":
                continue
            found.update(i["value"] for i in patient.get("identifier", []) if "value" in i)
            for name in patient.get("name", []):
                found.update(name.get("given", []))
                if "text" in name:
                    found.add(name["text"])
            found.update(t["value"] for t in patient.get("telecom", []) if "value" in t)
            if "birthDate" in patient:
                found.add(patient["birthDate"])
    found.discard("Synthetic")  # the examples' shared family name is a word of the study too
    return found
