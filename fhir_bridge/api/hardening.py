"""The HTTP edge's protections: host allow-list, security headers, HEAD, CORS, per-client rate
limits, and a server log that holds no exception text.

Each protection is a small ASGI middleware; `install_rate_limit` and `install` add them to the
app. Starlette runs the middleware added last first, so the order of the calls is the order of
the layers from the inside out.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import DefaultFormatter

from fhir_bridge import errors
from fhir_bridge.api import handlers
from fhir_bridge.api.responses import outcome_response, security_headers
from fhir_bridge.config import Settings
from fhir_bridge.domain.issues import Issue

LOOPBACK = ("localhost", "127.0.0.1", "::1")
_ANY_ADDRESS = ("", "0.0.0.0", "::")

# What a browser script on a configured origin may send and read (FHIR REST, Bulk Data)
CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Prefer",
    "If-Match",
    "If-None-Exist",
    "If-None-Match",
    "If-Modified-Since",
]
CORS_EXPOSED_HEADERS = ["Location", "ETag", "Content-Location", "X-Progress", "Retry-After"]
MAX_RATE_LIMIT_KEYS = 10_000


def install_rate_limit(app: Starlette, settings: Settings) -> None:
    """The per-client rate limit, innermost: it reads the client id that authentication, added
    after it (so run before it), leaves in the request state."""
    if settings.rate_limit_per_second > 0:
        buckets = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
        app.add_middleware(RateLimit, buckets=buckets)


def install(app: Starlette, settings: Settings) -> None:
    """The outer protections: HEAD, CORS when origins are configured, the host allow-list and,
    outermost so that every refusal carries them, the security headers."""
    app.add_middleware(HeadAsGet)
    if settings.cors_origins:
        app.add_middleware(
            CORS,
            allow_origins=settings.cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    app.add_middleware(HostAllowList, hosts=allowed_hosts(settings))
    app.add_middleware(SecurityHeaders)


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The configured host names, or else the base URL's host, the address the server listens
    on (unless it is every address) and the loopback names."""
    if settings.allowed_hosts:
        return frozenset(host_name(host) for host in settings.allowed_hosts)
    hosts = set(LOOPBACK)
    if settings.base_url:
        hosts.add(host_name(urlsplit(settings.base_url).netloc))
    if settings.host not in _ANY_ADDRESS:
        hosts.add(host_name(settings.host))
    return frozenset(hosts)


def host_name(host: str) -> str:
    """A Host header's (or netloc's) name, lower case, without port, brackets or final dot."""
    host = host.rpartition("@")[2].strip().lower()
    if host.startswith("["):  # an IPv6 literal: [::1]:8080
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


_JSON_HEADERS = _raw(security_headers(""))
_HTML_HEADERS = _raw(security_headers("text/html"))


class SecurityHeaders:
    """Adds the security headers to every response; a header the app set itself stays."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # raw pairs, cheaper than MutableHeaders; Starlette sends lower-case names
                headers = list(message.get("headers", ()))
                present = {name for name, _ in headers}
                content_type = next((v for n, v in headers if n == b"content-type"), b"")
                extra = _HTML_HEADERS if content_type.startswith(b"text/html") else _JSON_HEADERS
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CORS(CORSMiddleware):
    """Starlette's CORS, refusing a preflight with an OperationOutcome instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        text = bytes(response.body).decode()  # "Disallowed CORS origin, method, headers"
        return outcome_response([Issue("error", "invalid", text)], 400)


class HostAllowList:
    """Refuses a request whose Host is not one this server answers to: a DNS-rebinding page
    (its own name resolving to this server) is refused before it can read or write."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if host is not None and host_name(host) in self.hosts:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        shown = "(none)" if host is None else f"'{host[:100]}'"
        text = f"Host {shown} is not served here; FHIR_BRIDGE_ALLOWED_HOSTS lists the names"
        await _refuse(scope, receive, send, errors.InvalidRequestError(text))


class HeadAsGet:
    """HEAD wherever GET is: the GET's status and headers, no body (RFC 9110 section 9.3.2).
    A 405's Allow header names HEAD with GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "HEAD":
            await self.app(scope, receive, _allow_head(send))
            return
        ended = False

        async def send_head(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                await send(message)
            elif not ended:  # the first body part ends the response; the rest is dropped
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        # a copy: the server keeps reading its own scope's method (HEAD) to send no body
        await self.app({**scope, "method": "GET"}, receive, send_head)


def _allow_head(send: Send) -> Send:
    async def send_allow(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 405:
            headers = MutableHeaders(scope=message)
            allowed = [m.strip() for m in headers.get("allow", "").split(",")]
            if "GET" in allowed and "HEAD" not in allowed:
                headers["allow"] = ", ".join([*allowed, "HEAD"])
        await send(message)

    return send_allow


class TokenBuckets:
    """A token bucket per client key: `burst` requests at once, refilled at `rate` a second.
    At most `max_keys` buckets, the least recently used dropped first (a dropped client starts
    again with a full bucket), so memory stays bounded whatever the keys."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = MAX_RATE_LIMIT_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Takes a token for `key`: 0.0 when there was one, else the seconds until there is."""
        now = self.clock()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1 if wait == 0.0 else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimit:
    """429 with Retry-After once a client has used its bucket. The client is the id that
    authentication put in the request state, read when the request arrives, else the peer
    address (behind a proxy, uvicorn's --forwarded-allow-ips makes that the real client)."""

    def __init__(self, app: ASGIApp, buckets: TokenBuckets) -> None:
        self.app = app
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(client_key(scope))
        if wait == 0.0:
            await self.app(scope, receive, send)
            return
        retry_after = math.ceil(wait)
        text = f"Too many requests from this client; retry after {retry_after} s"
        await _refuse(
            scope, receive, send, errors.TooManyRequestsError(text, retry_after=retry_after)
        )


def client_key(scope: Scope) -> str:
    client_id = (scope.get("state") or {}).get("client_id")
    if client_id:
        return f"client:{client_id}"
    peer = scope.get("client")
    return f"peer:{peer[0] if peer else 'unknown'}"


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: errors.FHIRBridgeError) -> None:
    # the one place statuses and Retry-After are decided: the FHIRBridgeError handler
    response = await handlers.fhir_error(Request(scope), exc)
    await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


class RedactingFormatter(DefaultFormatter):
    """uvicorn's log format, with tracebacks that keep where each frame was but withhold each
    exception's text: a driver error can quote SQL and the values in it, a parser error the
    resource."""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # never a text another formatter cached
        return super().format(record)

    def formatException(
        self,
        ei: tuple[type[BaseException], BaseException, TracebackType | None]
        | tuple[None, None, None],
    ) -> str:
        return "".join(_redacted_traceback(ei[1], set())).rstrip("\n") if ei[1] else ""


def _redacted_traceback(exc: BaseException, seen: set[int]) -> list[str]:
    seen.add(id(exc))
    lines: list[str] = []
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and id(cause) not in seen:
        lines += _redacted_traceback(cause, seen)
        lines.append("\nwhich led to:\n\n")
    lines.append("Traceback (most recent call last):\n")
    # file, line and function of each frame; not the source line, which may quote values
    for frame in traceback.extract_tb(exc.__traceback__):
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
    kind = type(exc)
    lines.append(f"{kind.__module__}.{kind.__qualname__} (message withheld)\n")
    return lines


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with redacted tracebacks, the application's loggers
    included. `serve` keeps uvicorn's access log off: query strings hold identifiers. No
    request header (Authorization included) is logged by either."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["()"] = f"{__name__}.RedactingFormatter"
    config["loggers"]["fhir_bridge"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config
