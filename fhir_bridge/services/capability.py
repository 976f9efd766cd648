"""The CapabilityStatement: built from what the server really serves, never hand-written.

https://hl7.org/fhir/R4/capabilitystatement.html
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fhir_bridge import __version__
from fhir_bridge.domain.fhir import FHIR_VERSION, SUPPORTED_TYPES
from fhir_bridge.domain.search_parameters import search_parameters

# Parameter types the search engine evaluates; composite and special ones are not offered.
SEARCHABLE_TYPES = ("number", "date", "string", "token", "reference", "quantity", "uri")

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
VALIDATE_OPERATION = {
    "name": "validate",
    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
}
# Bulk Data Access IG v2.0.0 (https://hl7.org/fhir/uv/bulkdata/STU2/CapabilityStatement-bulk-data.html);
# the Patient and Group operations are listed under the IG's names and as `export`
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
_BULK_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
# SQL on FHIR v2 (https://sql-on-fhir.org/ig/latest/operations.html), R4 mode: the operations
# at the system level; ViewDefinitions are also kept and served as a type of this server
_VIEWS_DEFINITION = "http://sql-on-fhir.org/OperationDefinition/$"
_VIEW_REFERENCES = (
    "viewReference: ViewDefinition/[id], this server's absolute URL of one, or the canonical "
    "url (url|version) of a stored one"
)
VIEW_RUN_OPERATION = {
    "name": "viewdefinition-run",
    "definition": _VIEWS_DEFINITION + "viewdefinition-run",
    "documentation": (
        "_format json, ndjson, csv or parquet; " + _VIEW_REFERENCES + "; "
        "over this server's data every row comes from the research view (pseudonymised)"
    ),
}
VIEW_EXPORT_OPERATION = {
    "name": "viewdefinition-export",
    "definition": _VIEWS_DEFINITION + "viewdefinition-export",
    "documentation": "_format ndjson, csv, json or parquet, a file per view; " + _VIEW_REFERENCES,
}
SYSTEM_OPERATIONS = [
    {"name": "export", "definition": _BULK_DEFINITION + "export"},
    VIEW_RUN_OPERATION,
    VIEW_EXPORT_OPERATION,
]
VIEW_DEFINITION_RESOURCE: dict[str, Any] = {
    "type": "ViewDefinition",
    "profile": "https://sql-on-fhir.org/ig/StructureDefinition/ViewDefinition",
    "interaction": [
        {"code": code}
        for code in (
            "read",
            "vread",
            "update",
            "delete",
            "history-instance",
            "create",
            "search-type",
        )
    ],
    "versioning": "versioned-update",
    "readHistory": True,
    "updateCreate": True,
    "searchParam": [
        {"name": name, "type": kind}
        for name, kind in (
            ("_id", "token"),
            ("name", "string"),
            ("url", "uri"),
            ("status", "token"),
            ("resource", "token"),
        )
    ],
    "operation": [VIEW_RUN_OPERATION],
}
# The project's own operation: no published OperationDefinition exists for an outcome table,
# so its canonical is under the project's base (the server serves no OperationDefinitions).
OUTCOMES_OPERATION = {
    "name": "outcomes",
    "definition": "https://fhir-bridge.org/fhir/OperationDefinition/ResearchStudy-outcomes",
    "documentation": (
        "GET ResearchStudy/[id]/$outcomes: the study's outcome table as a Parameters resource "
        "(per visit n, mean (SD), median (IQR), change from baseline with its 95% CI, response "
        "and remission), computed from the research view of the study's cohort Group"
    ),
}
EXPORT_OPERATIONS = {
    resource_type: [
        {"name": name, "definition": _BULK_DEFINITION + definition}
        for name in (definition, "export")
    ]
    for resource_type, definition in (("Patient", "patient-export"), ("Group", "group-export"))
}
INSTANCE_OPERATIONS = {"ResearchStudy": [OUTCOMES_OPERATION], **EXPORT_OPERATIONS}


def searchable_parameters() -> dict[str, list[dict[str, str]]]:
    """Per supported type, the search parameters the engine really evaluates."""
    listing: dict[str, list[dict[str, str]]] = {}
    for resource_type in SUPPORTED_TYPES:
        params = search_parameters(resource_type)
        listing[resource_type] = [{"name": "_id", "type": "token"}] + [
            {"name": code, "type": p.type}
            for code, p in sorted(params.items())
            if p.type in SEARCHABLE_TYPES
        ]
    return listing


def capability_statement(
    base: str,
    search_params: Mapping[str, Sequence[Mapping[str, str]]],
    type_operations: Sequence[Mapping[str, str]] = (),
    profiles: Mapping[str, Sequence[str]] | None = None,
    system_interactions: Sequence[str] = SYSTEM_INTERACTIONS,
) -> dict[str, Any]:
    """search_params: per type {name, type, definition}; type_operations: {name, definition}."""
    resources = []
    for resource_type in SUPPORTED_TYPES:
        entry: dict[str, Any] = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "single",
        }
        if profiles and profiles.get(resource_type):
            entry["supportedProfile"] = list(profiles[resource_type])
        params = search_params.get(resource_type, ())
        if params:
            entry["searchParam"] = [dict(p) for p in params]
        operations = [*type_operations, *INSTANCE_OPERATIONS.get(resource_type, ())]
        if operations:
            entry["operation"] = [dict(op) for op in operations]
        resources.append(entry)
    if type_operations:  # Bundles are posted to the base and validated, never stored as such
        resources.append(
            {
                "type": "Bundle",
                "profile": "http://hl7.org/fhir/StructureDefinition/Bundle",
                "operation": [dict(op) for op in type_operations],
            }
        )
    resources.append(dict(VIEW_DEFINITION_RESOURCE))
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-27",
        "kind": "instance",
        "software": {"name": "fhir-bridge", "version": __version__},
        "implementation": {"description": "fhir-bridge FHIR R4 server", "url": base},
        "instantiates": [BULK_DATA],
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": resources,
                "interaction": [{"code": code} for code in system_interactions],
                "operation": [dict(op) for op in SYSTEM_OPERATIONS],
            }
        ],
    }


def smart_security(token_url: str) -> dict[str, Any]:
    """CapabilityStatement.rest.security of a server that takes SMART Backend Services tokens
    (https://build.fhir.org/ig/HL7/smart-app-launch/conformance.html)."""
    return {
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": token_url}],
            }
        ],
        "description": "SMART Backend Services: client_credentials with a signed JWT "
        "assertion (ES384 or RS384); system scopes; roles ehr, researcher, validator, admin.",
    }
