"""Every error class has an HTTP status: a new subclass without one fails here."""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request

from fhir_bridge import errors
from fhir_bridge.api.handlers import STATUS, fhir_error


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_error_class_has_a_status() -> None:
    missing = {cls.__name__ for cls in _subclasses(errors.FHIRBridgeError) if cls not in STATUS}
    assert missing == set()


def test_client_errors_are_4xx_and_store_errors_5xx() -> None:
    assert STATUS[errors.InvalidRequestError] == 400
    assert STATUS[errors.PreconditionFailedError] == 412
    assert STATUS[errors.UnprocessableResourceError] == 422
    assert STATUS[errors.StoreError] == 500


def test_a_statement_timeout_is_a_503_that_says_so() -> None:
    exc = errors.StatementTimeoutError("The database statement ran longer than 30 s")
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    response = asyncio.run(fhir_error(request, exc))
    assert response.status_code == 503
    assert orjson.loads(bytes(response.body)) == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "timeout",
                "diagnostics": "The database statement ran longer than 30 s",
            }
        ],
    }
