"""Every error class has an HTTP status: a new subclass without one fails here."""

from __future__ import annotations

from fhir_bridge import errors
from fhir_bridge.api.handlers import STATUS


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
