"""SMART Backend Services discovery and the token endpoint.

https://build.fhir.org/ig/HL7/smart-app-launch/conformance.html (`.well-known`) and
https://build.fhir.org/ig/HL7/smart-app-launch/backend-services.html (the token request).
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from fhir_bridge.api.deps import base_url, context, form_within
from fhir_bridge.errors import FHIRBridgeError, OAuthError
from fhir_bridge.services import audit, tokens
from fhir_bridge.services.context import ServiceContext

router = APIRouter()

MAX_TOKEN_REQUEST_BYTES = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def token_url(base: str) -> str:
    return f"{base}/auth/token"


@router.get("/.well-known/smart-configuration")
async def smart_configuration(base: Annotated[str, Depends(base_url)]) -> Response:
    body = {
        "token_endpoint": token_url(base),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(tokens.ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": list(tokens.SUPPORTED_SCOPES),
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.post("/auth/token")
async def token(
    request: Request,
    ctx: Annotated[ServiceContext, Depends(context)],
    base: Annotated[str, Depends(base_url)],
) -> Response:
    """An access token for a signed client assertion, or the OAuth 2.0 error body."""
    try:
        form = await form_within(request, MAX_TOKEN_REQUEST_BYTES)
        principal, answer = await run_in_threadpool(
            tokens.issue, ctx, request.app.state.tokens, form, token_url(base)
        )
    except OAuthError as exc:
        error = {"error": exc.error, "error_description": exc.description}
        return Response(orjson.dumps(error), exc.status, _NO_STORE, "application/json")
    except FHIRBridgeError as exc:  # the body: too large, not a form
        error = {"error": "invalid_request", "error_description": str(exc)}
        return Response(orjson.dumps(error), 400, _NO_STORE, "application/json")
    record = audit.CURRENT.get()
    if record is not None:
        record.principal = principal
    return Response(orjson.dumps(answer), 200, _NO_STORE, "application/json")
