"""SMART Backend Services: client registration, the token endpoint and bearer tokens.

https://build.fhir.org/ig/HL7/smart-app-launch/backend-services.html — a client signs a JWT
assertion with its private key (RS384 or ES384) and posts it with grant_type
client_credentials; the server checks it against the client's registered public keys and
answers a short-lived access token. Tokens are JWTs signed (HS256) with a secret every node
of the server shares; each request's token is checked against the registry, so a revoked
client is refused at once.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import orjson

from fhir_bridge.domain.fhir import SUPPORTED_TYPES
from fhir_bridge.domain.roles import MAXIMUM_SCOPES, ROLES
from fhir_bridge.domain.scopes import Scope, ScopeError, allowed, parse_scopes
from fhir_bridge.errors import (
    AuthenticationError,
    InvalidRequestError,
    OAuthError,
    VersionConflictError,
)
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.store import clients
from fhir_bridge.store.base import ResourceStore
from fhir_bridge.store.clients import ClientRow
from fhir_bridge.store.exports import server_secret

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("ES384", "RS384")  # SMART Backend Services: servers SHALL support both
_KEY_TYPES = {"ES384": "EC", "RS384": "RSA"}
MAX_ASSERTION_SECONDS = 300  # the spec: exp no more than five minutes in the future
CLOCK_SKEW_SECONDS = 60
MAX_JWKS_BYTES = 64 * 1024
JWKS_TIMEOUT_SECONDS = 5.0
SITE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a site name goes into meta.source as it is
SCOPED_TYPES = frozenset({"*", "ViewDefinition", *SUPPORTED_TYPES})
SUPPORTED_SCOPES = ("system/*.cruds", "system/*.rs", "system/*.read", "system/*.write")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a registered client and what its token grants."""

    client_id: str
    name: str
    role: str
    site: str | None
    scopes: tuple[Scope, ...]


@dataclass(frozen=True, slots=True)
class Tokens:
    """The signing key of access tokens and how long they live."""

    key: bytes
    lifetime_seconds: int

    @classmethod
    def of(cls, ctx: ServiceContext, lifetime_seconds: int) -> Tokens:
        with ctx.store.session(write=True) as session:
            return cls(server_secret(session, "token_key"), lifetime_seconds)


def register(
    store: ResourceStore,
    name: str,
    role: str,
    *,
    site: str | None = None,
    jwks: dict[str, Any] | None = None,
    jwks_url: str | None = None,
    client_id: str | None = None,
) -> ClientRow:
    """Register a client with its public keys (an inline JWKS or a JWKS URL) under
    `client_id` or a new id."""
    if role not in ROLES:
        raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", expression="role")
    if site is not None and not SITE.fullmatch(site):
        raise InvalidRequestError(
            "a site is 1-64 letters, digits, '.', '_' or '-'", expression="site"
        )
    if (jwks is None) == (jwks_url is None):
        raise InvalidRequestError("give the client's public keys as a JWKS or a JWKS URL")
    if jwks is not None:
        _public_keys(jwks)
    if jwks_url is not None and not jwks_url.startswith("https://"):
        if not jwks_url.startswith(("http://127.0.0.1", "http://localhost")):
            raise InvalidRequestError("a JWKS URL must be https (or on this machine)")
    row = ClientRow(
        id=client_id or str(uuid.uuid4()),
        name=name,
        role=role,
        site=site,
        jwks=None if jwks is None else orjson.dumps(jwks).decode(),
        jwks_url=jwks_url,
        created=time.time(),
        revoked=None,
    )
    with store.session(write=True) as session:
        if clients.read_client(session, row.id) is not None:
            raise VersionConflictError(f"A client {row.id} is registered already")
        clients.insert_client(session, row)
    return row


def registered(store: ResourceStore, client_id: str) -> ClientRow | None:
    with store.session() as session:
        return clients.read_client(session, client_id)


def issue(
    ctx: ServiceContext, tokens: Tokens, form: dict[str, str], token_url: str
) -> tuple[Principal, dict[str, Any]]:
    """Answer a token request (the form of a POST to the token endpoint) whose assertion must
    be addressed to `token_url`: the client and the token response; OAuthError names what
    was refused."""
    if form.get("grant_type") != "client_credentials":
        raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form.get("client_assertion")
    if not assertion:
        raise OAuthError("invalid_request", "client_assertion is missing")
    scope_text = form.get("scope", "").strip()
    if not scope_text:
        raise OAuthError("invalid_scope", "scope is missing")
    now = time.time()
    client, claims = _verified(ctx, assertion, token_url, now)
    try:
        requested = parse_scopes(scope_text)
    except ScopeError as exc:
        raise OAuthError("invalid_scope", str(exc)) from None
    unknown = [str(s) for s in requested if s.resource_type not in SCOPED_TYPES]
    if unknown:
        raise OAuthError("invalid_scope", f"no such resource type: {' '.join(unknown)}")
    if not allowed(requested, MAXIMUM_SCOPES[client.role]):
        raise OAuthError("invalid_scope", f"a {client.role} client may not have '{scope_text}'")
    with ctx.store.session(write=True) as session:
        if not clients.use_jti(session, client.id, str(claims["jti"]), float(claims["exp"]), now):
            raise OAuthError("invalid_client", "this assertion's jti was used before")
    granted = " ".join(scope_text.split())  # as asked (v1 or v2), each within the role
    token = jwt.encode(
        {
            "sub": client.id,
            "scope": granted,
            "iat": int(now),
            "exp": int(now) + tokens.lifetime_seconds,
            "jti": uuid.uuid4().hex,
        },
        tokens.key,
        algorithm="HS256",
    )
    principal = Principal(client.id, client.name, client.role, client.site, tuple(requested))
    return principal, {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": tokens.lifetime_seconds,
        "scope": granted,
    }


def authenticate(ctx: ServiceContext, tokens: Tokens, token: str) -> Principal:
    """The principal of a bearer token; an expired, tampered or revoked one is a 401."""
    try:
        claims = jwt.decode(
            token, tokens.key, algorithms=["HS256"], options={"require": ["exp", "sub", "scope"]}
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("The access token has expired") from None
    except jwt.PyJWTError:
        raise AuthenticationError("The access token is not valid") from None
    with ctx.store.session() as session:
        client = clients.read_client(session, str(claims["sub"]))
    if client is None or client.revoked is not None:
        raise AuthenticationError("The access token's client is not registered")
    return Principal(
        client.id, client.name, client.role, client.site, tuple(parse_scopes(claims["scope"]))
    )


def _verified(
    ctx: ServiceContext, assertion: str, token_url: str, now: float
) -> tuple[ClientRow, dict[str, Any]]:
    """The client of a signed assertion and its claims, every check of the spec passed."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise OAuthError("invalid_request", "client_assertion is not a JWT") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise OAuthError("invalid_client", f"alg must be one of {', '.join(ALGORITHMS)}")
    issuer, subject = unverified.get("iss"), unverified.get("sub")
    if not isinstance(issuer, str) or issuer != subject:
        raise OAuthError("invalid_client", "iss and sub must both be the client id")
    with ctx.store.session() as session:
        client = clients.read_client(session, issuer)
    if client is None or client.revoked is not None:
        raise OAuthError("invalid_client", "the client is not registered")
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_url:
        raise OAuthError("invalid_client", "jku is not the client's registered JWKS URL")
    key = _signing_key(client, alg, header.get("kid"))
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key,
            algorithms=[alg],
            audience=token_url,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iss", "sub", "aud", "jti"]},
        )
    except jwt.InvalidAudienceError:
        raise OAuthError("invalid_client", f"aud must be the token URL {token_url}") from None
    except jwt.ExpiredSignatureError:
        raise OAuthError("invalid_client", "the assertion has expired") from None
    except jwt.ImmatureSignatureError:
        raise OAuthError("invalid_client", "the assertion is not valid yet") from None
    except jwt.InvalidSignatureError:
        raise OAuthError("invalid_client", "the assertion's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise OAuthError("invalid_client", f"the assertion is not valid: {exc}") from None
    if float(claims["exp"]) > now + MAX_ASSERTION_SECONDS + CLOCK_SKEW_SECONDS:
        raise OAuthError("invalid_client", "exp must be at most five minutes in the future")
    return client, claims


def _signing_key(client: ClientRow, alg: str, kid: Any) -> Any:
    """The client's public key that `kid` names, of the kind `alg` needs."""
    if client.jwks is not None:
        jwks = orjson.loads(client.jwks)
    else:
        jwks = _fetch_jwks(str(client.jwks_url))
    matching = [
        k
        for k in _public_keys(jwks)
        if k.key_type == _KEY_TYPES[alg] and (kid is None or k.key_id == kid)
    ]
    if not matching:
        raise OAuthError("invalid_client", f"no registered {alg} key has kid '{kid}'")
    return matching[0].key


def _public_keys(jwks: Any) -> list[jwt.PyJWK]:
    """The usable keys of a JWKS; a JWKS with none is refused, as is one holding a private
    key (registering it would put the client's secret in the database)."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidRequestError("a JWKS needs a non-empty 'keys' array")
    found = []
    for n, key in enumerate(keys):
        if not isinstance(key, dict):
            raise InvalidRequestError(f"keys[{n}] is not an object")
        if "d" in key:
            raise InvalidRequestError(f"keys[{n}] is a private key; register the public key")
        if key.get("kty") not in ("EC", "RSA"):
            continue
        try:
            found.append(jwt.PyJWK(key))
        except jwt.PyJWTError as exc:
            raise InvalidRequestError(f"keys[{n}] is not a usable key: {exc}") from None
    if not found:
        raise InvalidRequestError("the JWKS has no EC or RSA key")
    return found


def _fetch_jwks(url: str) -> Any:
    """A client's JWKS from its URL, bounded in time and size."""
    try:
        with httpx.stream("GET", url, timeout=JWKS_TIMEOUT_SECONDS) as response:
            response.raise_for_status()
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise OAuthError("invalid_client", "the client's JWKS is too large")
        return orjson.loads(body)
    except (httpx.HTTPError, orjson.JSONDecodeError):
        raise OAuthError("invalid_client", "the client's JWKS URL did not answer a JWKS") from None
