"""The project's conformance resources as a FHIR NPM package (folder + .tgz) that the HL7
validator and FHIR servers load. https://confluence.hl7.org/display/FHIR/NPM+Package+Specification
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

Snapshot = Callable[[dict[str, Any]], dict[str, Any]]


def package_manifest(m: Mappings) -> dict[str, Any]:
    """package.json of the IG package."""
    ig = m.ig
    return {
        "name": ig.package_name,
        "version": ig.version,
        "type": "IG",
        "title": ig.title,
        "description": ig.title,
        "canonical": ig.canonical,
        "url": ig.canonical,
        "author": ig.publisher,
        "license": ig.license,
        "fhirVersions": [ig.fhir_version],
        "dependencies": {"hl7.fhir.r4.core": ig.fhir_version},
    }


def package_resources(m: Mappings, snapshot: Snapshot | None = None) -> list[dict[str, Any]]:
    """Conformance resources plus the study definitions; profiles get snapshots if asked."""
    resources = [*m.conformance_resources(), *m.study_resources()]
    if snapshot is not None:
        resources = [
            snapshot(r) if r["resourceType"] == "StructureDefinition" else r for r in resources
        ]
    return resources


def _index_entry(filename: str, resource: dict[str, Any]) -> dict[str, Any]:
    entry = {"filename": filename, "resourceType": resource["resourceType"], "id": resource["id"]}
    for key in ("url", "version", "kind", "type"):
        if key in resource:
            entry[key] = resource[key]
    return entry


def _dump(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def build_ig_package(m: Mappings, out_dir: Path, snapshot: Snapshot | None = None) -> Path:
    """Write `out_dir/package/` (package.json, .index.json, one file per resource) and
    `out_dir/<name>-<version>.tgz`; returns the .tgz path. Byte-identical on every run.
    """
    folder = out_dir / "package"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files: dict[str, bytes] = {"package.json": _dump(package_manifest(m))}
    index = []
    for resource in package_resources(m, snapshot):
        filename = f"{resource['resourceType']}-{resource['id']}.json"
        files[filename] = _dump(resource)
        index.append(_index_entry(filename, resource))
    files[".index.json"] = _dump({"index-version": 1, "files": index})
    for name, data in files.items():
        (folder / name).write_bytes(data)
    archive = out_dir / f"{m.ig.package_name}-{m.ig.version}.tgz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    with gzip.GzipFile(archive, "wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return archive
