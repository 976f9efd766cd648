"""Writes openapi.yaml from the application's routes: `python tools/write_openapi.py`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings
from fhir_bridge.domain.fhir import SUPPORTED_TYPES

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"

INSTANCE = "/fhir/{resource_type}/{resource_id}"
# Where a stored resource can be reached from the answer that returned it: OpenAPI links
# (https://spec.openapis.org/oas/v3.0.3#link-object), so that clients and stateful testers
# follow a create or an update to the resource it stored.
FOLLOW_UPS: dict[str, tuple[str, str]] = {
    "Read": (INSTANCE, "get"),
    "Update": (INSTANCE, "put"),
    "Patch": (INSTANCE, "patch"),
    "Delete": (INSTANCE, "delete"),
    "History": (f"{INSTANCE}/_history", "get"),
    "Vread": (f"{INSTANCE}/_history/{{version_id}}", "get"),
    "Validate": (f"{INSTANCE}/$validate", "post"),
}
STORED = {
    "resource_type": "$response.body#/resourceType",
    "resource_id": "$response.body#/id",
    "version_id": "$response.body#/meta/versionId",
}
# answers that return the stored resource
PRODUCERS = (("/fhir/{resource_type}", "post", "201"), (INSTANCE, "put", "200"))


def add_links(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    links: dict[str, Any] = {}
    for name, (path, method) in FOLLOW_UPS.items():
        operation = paths[path][method]
        wanted = [p["name"] for p in operation["parameters"] if p["in"] == "path"]
        link: dict[str, Any] = {
            "operationId": operation["operationId"],
            "parameters": {parameter: STORED[parameter] for parameter in wanted},
        }
        if name == "Update":
            # the same resource sent back, conditional on the version just returned
            link["parameters"]["header.if-match"] = "$response.header.ETag"
            link["requestBody"] = "$response.body"
        links[name] = link
    for path, method, status in PRODUCERS:
        paths[path][method]["responses"][status]["links"] = copy.deepcopy(links)


def name_types(spec: dict[str, Any]) -> None:
    """The `resource_type` in a path is one of the types served (others answer 404)."""
    for operations in spec["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "resource_type":
                    parameter["schema"]["enum"] = list(SUPPORTED_TYPES)


def render() -> str:
    spec = create_app(Settings(database_url="sqlite:///unused.db")).openapi()
    name_types(spec)
    add_links(spec)
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    OPENAPI_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {OPENAPI_PATH}")
