"""The Validator facade: base structure checks plus claimed, explicit and mandated profiles.

https://hl7.org/fhir/R4/validation.html and https://hl7.org/fhir/R4/profiling.html
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.validation.compiler import Compiler
from fhir_bridge.validation.engine import Context, Engine
from fhir_bridge.validation.terminology import Terminology


class Validator:
    """Validates resource dicts against base R4 and registered profiles; never raises."""

    def __init__(self) -> None:
        self.compiler = Compiler()
        self.terminology = Terminology()
        self.engine = Engine(self.compiler, self.terminology)

    def validate(self, resource: Any, profiles: Sequence[str] = ()) -> list[Issue]:
        """Every issue found in `resource`, each with a FHIRPath-style expression.

        https://hl7.org/fhir/R4/resource-operation-validate.html
        """
        ctx = Context()
        path = resource.get("resourceType") if isinstance(resource, dict) else None
        try:
            self.engine.resource(resource, path if isinstance(path, str) else "", ctx)
        except RecursionError:
            ctx.issues.append(Issue("error", "too-costly", "resource nesting is too deep", path))
        return ctx.issues


@lru_cache(maxsize=1)
def get_validator() -> Validator:
    """The process-wide validator, compiled once."""
    return Validator()
