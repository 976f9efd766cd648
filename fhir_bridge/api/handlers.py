"""Exceptions → OperationOutcome responses; the one table of HTTP statuses per error class.

Lookup walks the exception's __mro__, so a subclass inherits its parent's status unless it
has its own row (starlette's _exception_handler does the same for handlers).
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fhir_bridge import errors
from fhir_bridge.api.responses import outcome_response, security_headers
from fhir_bridge.domain.issues import Issue

log = logging.getLogger("fhir_bridge.api")

STATUS: dict[type[errors.FHIRBridgeError], int] = {
    errors.FHIRBridgeError: 500,
    errors.InvalidRequestError: 400,
    errors.PayloadTooLargeError: 413,
    errors.AuthenticationError: 401,
    errors.ForbiddenError: 403,
    errors.OAuthError: 400,  # the token route answers its own status and body
    errors.ResourceNotFoundError: 404,
    errors.MethodNotAllowedError: 405,
    errors.NotAcceptableError: 406,
    errors.VersionConflictError: 409,
    errors.ResourceGoneError: 410,
    errors.PreconditionFailedError: 412,
    errors.UnsupportedMediaTypeError: 415,
    errors.UnprocessableResourceError: 422,
    errors.TooManyRequestsError: 429,
    errors.MappingError: 422,
    errors.MappingSpecError: 500,
    errors.StoreError: 500,
    errors.StatementTimeoutError: 503,
}

_HTTP_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 415: "not-supported"}


def status_for(exc: errors.FHIRBridgeError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.FHIRBridgeError)
    status = status_for(exc)
    if status >= 500 and status != 503:  # a 503's text is the server's own, no driver detail
        return _internal(exc)
    response = outcome_response(exc.issues, status, request.headers.get("accept"))
    if isinstance(exc, errors.TooManyRequestsError):
        response.headers["Retry-After"] = str(exc.retry_after)
    if status == 401:  # RFC 6750: how to authenticate
        response.headers["WWW-Authenticate"] = 'Bearer realm="fhir-bridge"'
    return response


async def request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        code = "required" if error.get("type") == "missing" else "value"
        issues.append(Issue("error", code, str(error.get("msg", "Invalid request")), location))
    return outcome_response(issues, 400, request.headers.get("accept"))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid" if exc.status_code < 500 else "exception")
    text = {
        404: f"No route for {request.method} {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    response = outcome_response(
        [Issue("error", code, text)], exc.status_code, request.headers.get("accept")
    )
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


async def recursion_error(request: Request, exc: Exception) -> Response:
    # only a body nested hundreds of levels deep gets here (orjson accepts 1,024 levels)
    text = "The resource is nested too deeply to process"
    return outcome_response([Issue("error", "too-costly", text)], 400)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    return _internal(exc)


def _internal(exc: BaseException) -> Response:
    request_id = str(uuid.uuid4())
    # the traceback goes to the server log only; resource content never reaches the client
    log.error("internal error, request id %s", request_id, exc_info=exc)
    text = f"Internal server error (request id {request_id})"
    response = outcome_response([Issue("fatal", "exception", text)], 500)
    # an unexpected error is answered outside the middleware that adds these
    response.headers.update(security_headers(response.media_type or ""))
    return response


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.FHIRBridgeError, fhir_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RecursionError, recursion_error)
    app.add_exception_handler(Exception, unexpected_error)
