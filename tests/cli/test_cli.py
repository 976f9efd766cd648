"""The command line's own behaviour: exit codes and outputs of validate and package."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from fhir_bridge.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_validate_examples_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES / "messages"), str(EXAMPLES / "trial")]) == 0


def test_validate_a_broken_file_exits_1_and_names_the_element(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "obs.json"
    broken.write_text(json.dumps({"resourceType": "Observation", "status": "bogus", "code": {}}))
    assert main(["validate", str(broken)]) == 1
    assert "Observation.status" in capsys.readouterr().out


def test_validate_escapes_control_characters_of_keys_and_file_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "obs\x1b[8m.json"
    broken.write_text(json.dumps({"resourceType": "Observation", "\x1b[32mstatus\r": "final"}))
    assert main(["validate", str(broken)]) == 1
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "\x1b" not in printed and "\r" not in printed
    assert "obs\\x1b[8m.json" in printed
    assert "\\x1b[32mstatus\\r" in printed


def test_package_builds_a_loadable_fhir_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["package", "--out", str(tmp_path)]) == 0
    archive = Path(capsys.readouterr().out.strip())
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
    assert "package/.index.json" in names
    assert "package/StructureDefinition-madrs-observation.json" in names
    assert manifest["fhirVersions"] == ["4.0.1"]
