"""FHIR HTTP responses: media type, ETag, Last-Modified, Location, Prefer handling, and the
security headers every response carries."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime

import orjson
from starlette.responses import Response

from fhir_bridge.domain.fhir import FHIR_JSON
from fhir_bridge.domain.issues import Issue, operation_outcome
from fhir_bridge.store.base import StoredResource

# Participant data must not stay in browser or proxy caches; FHIR keeps ETag and Last-Modified
# for conditional requests, which no-store leaves working.
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# JSON needs no page resources at all; HTML (none is served today) may show the images and
# styles it carries inline, and nothing it would have to fetch or run.
CSP_JSON = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
CSP_HTML = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def security_headers(content_type: str) -> dict[str, str]:
    csp = CSP_HTML if content_type.startswith("text/html") else CSP_JSON
    return {**SECURITY_HEADERS, "content-security-policy": csp}


class FHIRResponse(Response):
    media_type = FHIR_JSON


def outcome_response(issues: list[Issue], status: int, accept: str | None = None) -> Response:
    """An OperationOutcome; as `application/json` to a client that accepts that and not
    `application/fhir+json` (R4 http.html#mime: both name FHIR JSON)."""
    body = orjson.dumps(operation_outcome(issues))
    if accept and "application/json" in accept and FHIR_JSON not in accept:
        return Response(body, status_code=status, media_type="application/json")
    return FHIRResponse(body, status_code=status)


def http_date(instant: str) -> str:
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def resource_headers(stored: StoredResource, base: str, location: bool = False) -> dict[str, str]:
    headers = {
        "ETag": f'W/"{stored.version_id}"',
        "Last-Modified": http_date(stored.last_updated),
    }
    if location:
        headers["Location"] = (
            f"{base}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        )
    return headers


def resource_response(
    stored: StoredResource,
    base: str,
    status: int = 200,
    prefer: str | None = None,
    location: bool = False,
    issues: list[Issue] | None = None,
) -> Response:
    """The stored bytes as they are, or what `Prefer: return=` asks for.

    https://hl7.org/fhir/R4/http.html#ops — minimal: no body; OperationOutcome: the outcome.
    """
    headers = resource_headers(stored, base, location)
    wanted = prefer_return(prefer)
    if wanted == "minimal":
        return Response(status_code=status, headers=headers)
    if wanted == "OperationOutcome":
        body = orjson.dumps(operation_outcome(issues or []))
        return FHIRResponse(body, status_code=status, headers=headers)
    return FHIRResponse(stored.data, status_code=status, headers=headers)


def prefer_return(prefer: str | None) -> str:
    """The `return=` preference of a Prefer header; representation by default. Preferences
    are separated by commas (RFC 7240 section 2); semicolons are read alike, as clients
    write `handling=strict; return=minimal` too."""
    for token in re.split("[;,]", prefer or ""):
        name, _, value = token.strip().partition("=")
        if name.strip() == "return":
            return value.strip().strip('"')
    return "representation"


def prefers_strict(prefer: str | None) -> bool:
    return prefer is not None and "handling=strict" in prefer.replace(" ", "")
