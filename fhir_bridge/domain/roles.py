"""The four roles a registered client has, and what each may reach on top of its scopes
(DESIGN.md section 7).

- ehr: writes and reads clinical data (of its own site), never the audit trail;
- researcher: the research view only (Bulk export, view runs, the outcome report), conformance
  resources, ResearchStudy and ViewDefinitions: never a participant's identified record;
- validator: `$validate` and conformance resources, no participant data;
- admin: the audit trail and the client registry.
"""

from __future__ import annotations

from fhir_bridge.domain.scopes import Scope, parse_scopes

ROLES = ("ehr", "researcher", "validator", "admin")

# Resources that describe the trial and its instruments, no participant's data
CONFORMANCE_TYPES = frozenset(
    {
        "CapabilityStatement",
        "CodeSystem",
        "ConceptMap",
        "ImplementationGuide",
        "NamingSystem",
        "OperationDefinition",
        "Questionnaire",
        "SearchParameter",
        "StructureDefinition",
        "ValueSet",
    }
)
AUDIT_TYPES = frozenset({"AuditEvent"})
READS = frozenset("rs")

# The widest scopes a client of each role is granted
MAXIMUM_SCOPES: dict[str, list[Scope]] = {
    "ehr": parse_scopes("system/*.cruds"),
    "researcher": parse_scopes("system/*.rs system/ViewDefinition.cruds"),
    "validator": parse_scopes("system/*.rs"),
    "admin": parse_scopes("system/*.rs"),
}


def role_reaches(role: str, resource_type: str, action: str) -> bool:
    """Whether a client of `role` may do `action` (a letter of 'cruds') on `resource_type`
    at all, whatever its scopes."""
    if role == "ehr":
        return resource_type not in AUDIT_TYPES
    reads = action in READS
    if role == "researcher":
        if resource_type == "ViewDefinition":
            return True
        return reads and (resource_type in CONFORMANCE_TYPES or resource_type == "ResearchStudy")
    if role == "validator":
        return reads and resource_type in CONFORMANCE_TYPES
    if role == "admin":
        return reads and (resource_type in CONFORMANCE_TYPES or resource_type in AUDIT_TYPES)
    return False
