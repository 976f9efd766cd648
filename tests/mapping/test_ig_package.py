"""The FHIR NPM package of the conformance resources."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from fhir_bridge.mapping import Mappings, build_ig_package


def test_package_folder_and_archive_list_every_resource(m: Mappings, tmp_path: Path) -> None:
    archive = build_ig_package(m, tmp_path, None)
    assert archive.name == "org.fhir-bridge.mdma-mdd-0.1.0.tgz"
    manifest = json.loads((tmp_path / "package" / "package.json").read_text(encoding="utf-8"))
    assert manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}
    index = json.loads((tmp_path / "package" / ".index.json").read_text(encoding="utf-8"))
    files = {f["filename"] for f in index["files"]}
    assert "StructureDefinition-madrs-observation.json" in files
    assert len(files) == len(m.conformance_resources()) + len(m.study_resources())
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert names == {f"package/{name}" for name in files | {"package.json", ".index.json"}}
    for entry in index["files"]:
        resource = json.loads((tmp_path / "package" / entry["filename"]).read_text("utf-8"))
        assert (resource["resourceType"], resource["id"]) == (entry["resourceType"], entry["id"])


def test_package_is_byte_identical_across_builds(m: Mappings, tmp_path: Path) -> None:
    first = build_ig_package(m, tmp_path / "a", None).read_bytes()
    assert build_ig_package(m, tmp_path / "b", None).read_bytes() == first


def test_snapshot_callable_is_applied_to_profiles(m: Mappings, tmp_path: Path) -> None:
    def snapshot(sd: dict[str, Any]) -> dict[str, Any]:
        return sd | {"snapshot": {"element": [{"id": sd["type"], "path": sd["type"]}]}}

    build_ig_package(m, tmp_path, snapshot)
    sd = json.loads(
        (tmp_path / "package" / "StructureDefinition-trial-patient.json").read_text(
            encoding="utf-8"
        )
    )
    assert sd["snapshot"]["element"] == [{"id": "Patient", "path": "Patient"}]
