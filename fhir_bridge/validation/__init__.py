"""Definition-driven FHIR R4 validation: `get_validator().validate(resource) -> list[Issue]`."""

from fhir_bridge.validation.validator import Validator, get_validator

__all__ = ["Validator", "get_validator"]
