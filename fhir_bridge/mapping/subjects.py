"""The study subject id: a participant's identifier in the study (ResearchSubject.identifier),
and the rule every write path applies to it."""

from __future__ import annotations

import re
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.mapping.spec import SID

SUBJECT_SYSTEM = f"{SID}/study-subject"
# Letters, digits, `.`, `_` and `-`, starting with a letter or digit: an id never starts a
# spreadsheet formula (see domain/spreadsheet.py) and fits in a file name and a URL unescaped.
SUBJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SUBJECT_ID_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_subject_id(value: str) -> bool:
    return SUBJECT_ID.fullmatch(value) is not None


def check_subject_ids(resource: dict[str, Any]) -> list[Issue]:
    """A study subject identifier on any resource must follow the study id rule."""
    identifiers = resource.get("identifier")
    if not isinstance(identifiers, list):
        return []
    issues = []
    for n, identifier in enumerate(identifiers):
        if not isinstance(identifier, dict) or identifier.get("system") != SUBJECT_SYSTEM:
            continue
        value = identifier.get("value")
        if not isinstance(value, str) or not is_subject_id(value):
            issues.append(
                Issue(
                    "error",
                    "value",
                    f"study subject id {value!r} is not valid: {SUBJECT_ID_RULE}",
                    f"{resource.get('resourceType')}.identifier[{n}].value",
                )
            )
    return issues
