"""The checks a resource must pass before it is stored (structure, conformance, clinical rules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from fhir_bridge.domain.fhir import parse_model
from fhir_bridge.domain.issues import Issue


def structure_check(resource: dict[str, Any], profiles: Sequence[str] = ()) -> list[Issue]:
    """Structural check with the fhir.resources R4B models (types, required, unknown elements)."""
    try:
        parse_model(resource)
    except ValidationError as exc:
        return [_issue(resource["resourceType"], err) for err in exc.errors()]
    return []


def _issue(resource_type: str, error: Any) -> Issue:
    path = resource_type
    for part in error.get("loc", ()):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "__root__":
            path += f".{part}"
    kind = error.get("type", "")
    code = (
        "required" if kind == "missing" else "structure" if kind == "extra_forbidden" else "value"
    )
    return Issue("error", code, str(error.get("msg", "invalid")), path)
