"""Request-side helpers shared by routes: the service context, base URL, body and negotiation."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Query, Request

from fhir_bridge.domain.cost import check_shape
from fhir_bridge.domain.fhir import parse_json, parse_uint
from fhir_bridge.errors import (
    NotAcceptableError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.history import HistoryQuery

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"
_FORMAT_ALIASES = {"json", *JSON_TYPES}

# Bodies are read raw (parsed once with orjson), so their shape is declared for OpenAPI here.
RESOURCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            media: {
                "schema": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {"resourceType": {"type": "string"}},
                }
            }
            for media in ("application/fhir+json", "application/json")
        },
    }
}

# A POSTed Parameters body (an operation's); a GET has none
PARAMETERS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/fhir+json": {
                "schema": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {"resourceType": {"const": "Parameters"}},
                }
            }
        },
    }
}


async def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.context
    return ctx


async def base_url(request: Request) -> str:
    return fhir_base(request)


def fhir_base(request: Request) -> str:
    """The FHIR base URL: the configured one, else derived from the request."""
    configured: str = request.app.state.settings.base_url
    if configured:
        return configured.rstrip("/")
    # the Host header is one of the allowed names (api/hardening.py), so links built from it
    # cannot point at a name a DNS-rebinding page chose
    return str(request.base_url).rstrip("/") + "/fhir"


async def history_query(
    since: Annotated[str | None, Query(alias="_since")] = None,
    count: Annotated[int | None, Query(alias="_count", ge=1)] = None,
    cursor: Annotated[str | None, Query(alias="_cursor")] = None,
    summary: Annotated[str | None, Query(alias="_summary")] = None,
) -> HistoryQuery:
    return HistoryQuery(since, count, cursor, summary == "count")


async def negotiate(request: Request) -> None:
    """JSON only: `_format` overrides Accept (https://hl7.org/fhir/R4/http.html#mime)."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() not in _FORMAT_ALIASES:
            raise NotAcceptableError(f"_format '{fmt}' is not supported; use json")
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    media = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if not any(m in JSON_TYPES or m in ("*/*", "application/*") for m in media):
        raise NotAcceptableError(f"Cannot produce '{accept}'; this server speaks FHIR JSON")


async def json_body(request: Request) -> Any:
    """The parsed resource body; wrong media type 415, too large 413, malformed 400."""
    return await _read_json(request, JSON_TYPES)


async def json_bytes(request: Request) -> bytes:
    """The body of a JSON media type, unparsed (a Bundle is parsed by the service)."""
    return await _read_body(request, JSON_TYPES)


async def json_patch_body(request: Request) -> Any:
    """The parsed JSON Patch body of a PATCH (RFC 6902)."""
    return await _read_json(request, (JSON_PATCH,))


async def form_params(request: Request) -> list[tuple[str, str]]:
    """The form-encoded parameters of a POST _search, after those of the URL."""
    body = (await _read_body(request, (FORM,))).decode("utf-8", errors="replace")
    return list(request.query_params.multi_items()) + parse_qsl(body, keep_blank_values=True)


async def form_within(request: Request, limit: int) -> dict[str, str]:
    """The form-encoded fields of a body of at most `limit` bytes (a token request)."""
    body = (await _read_body(request, (FORM,), limit)).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


async def json_body_within(request: Request, limit: int) -> Any:
    """The parsed body of a JSON media type, at most `limit` bytes (413 beyond)."""
    return parse_json(await _read_body(request, JSON_TYPES, limit))


async def _read_body(
    request: Request, accepted: tuple[str, ...], limit: int | None = None
) -> bytes:
    """The body of an accepted media type; otherwise 415, over the size limit 413."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media not in accepted:
        raise UnsupportedMediaTypeError(
            f"Content-Type '{content_type or '(none)'}' is not supported; send {accepted[0]}"
        )
    if limit is None:
        limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    size = parse_uint(declared) if declared else None
    if size is not None and size > limit:
        raise PayloadTooLargeError(f"The body exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"The body exceeds the limit of {limit} bytes")
    return bytes(body)


async def _read_json(request: Request, accepted: tuple[str, ...]) -> Any:
    body = parse_json(await _read_body(request, accepted))
    context: ServiceContext = request.app.state.context
    check_shape(body, context.limits)  # before any work on it
    return body
