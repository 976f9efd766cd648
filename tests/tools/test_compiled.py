"""tools/compiled.py: which compiled builds would run code other than their source."""

from __future__ import annotations

import os
from pathlib import Path

from tools.compiled import SUFFIX, missing, stale

LISTED = ["fhir_bridge/a.py", "fhir_bridge/b.py"]


def project(tmp_path: Path) -> Path:
    (tmp_path / "fhir_bridge").mkdir()
    listed = ", ".join(f'"{s}"' for s in LISTED)
    (tmp_path / "pyproject.toml").write_text(f"[tool.fhir-bridge]\ncompiled = [{listed}]\n")
    for source in LISTED:
        (tmp_path / source).write_text("")
    return tmp_path


def build(root: Path, module: str, age: float) -> None:
    """A build of `module` (path without .py), `age` seconds older than now."""
    path = root / f"{module}{SUFFIX}"
    path.write_bytes(b"")
    mtime = path.stat().st_mtime - age
    os.utime(path, (mtime, mtime))


def test_builds_newer_than_their_sources_are_current(tmp_path: Path) -> None:
    root = project(tmp_path)
    build(root, "fhir_bridge/a", -10)
    build(root, "fhir_bridge/b", -10)
    assert (stale(root), missing(root)) == ([], [])


def test_a_build_older_than_its_source_is_stale(tmp_path: Path) -> None:
    root = project(tmp_path)
    build(root, "fhir_bridge/a", 10)
    assert stale(root) == ["fhir_bridge/a.py"]
    assert missing(root) == ["fhir_bridge/b.py"]


def test_a_build_of_a_module_taken_off_the_list_is_stale(tmp_path: Path) -> None:
    root = project(tmp_path)
    build(root, "fhir_bridge/c", -10)
    assert stale(root) == [f"fhir_bridge/c{SUFFIX}"]
