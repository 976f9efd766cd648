"""The Issue record every layer uses to report a finding (one OperationOutcome.issue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding: severity, an OperationOutcome issue-type code, text and the element path.

    https://hl7.org/fhir/R4/operationoutcome.html
    """

    severity: Severity
    code: str
    diagnostics: str
    expression: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")

    def to_fhir(self) -> dict[str, object]:
        issue: dict[str, object] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


def has_errors(issues: list[Issue]) -> bool:
    return any(issue.is_error for issue in issues)


def operation_outcome(issues: list[Issue]) -> dict[str, object]:
    """An OperationOutcome for issues: https://hl7.org/fhir/R4/operationoutcome.html.

    With no issues it says so: the resource requires at least one."""
    if not issues:
        issues = [Issue("information", "informational", "All OK")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}
