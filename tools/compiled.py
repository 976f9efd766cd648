"""Which modules are compiled with mypyc (pyproject.toml, [tool.fhir-bridge] compiled), and
whether their builds are current.

    python tools/compiled.py    exit 1 when a compiled module is missing or older than its
                                source (then `./dev build`), 0 when all are current

A build older than its source is the trap of compiled modules: Python imports the build, so
an edit would not run (the same for a build left behind by a module taken off the list). The
test suite refuses to start then (tests/conftest.py).
"""

from __future__ import annotations

import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def compiled_sources(root: Path = ROOT) -> list[str]:
    """The compiled modules' source paths, relative to the project root."""
    with (root / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["tool"]["fhir-bridge"]["compiled"])


def _build_of(root: Path, source: str) -> Path:
    return root / (source.removesuffix(".py") + SUFFIX)


def stale(root: Path = ROOT) -> list[str]:
    """Sources whose build exists but is older, and builds of modules no longer compiled:
    Python would run the old code."""
    sources = compiled_sources(root)
    builds = {_build_of(root, s) for s in sources}
    orphans = [
        str(b.relative_to(root))
        for b in (root / "fhir_bridge").rglob(f"*{SUFFIX}")
        if b not in builds
    ]
    older = [
        s
        for s in sources
        if _build_of(root, s).exists()
        and _build_of(root, s).stat().st_mtime < (root / s).stat().st_mtime
    ]
    return orphans + older


def missing(root: Path = ROOT) -> list[str]:
    """Sources without a build: they run as plain Python."""
    return [s for s in compiled_sources(root) if not _build_of(root, s).exists()]


if __name__ == "__main__":
    sys.exit(1 if stale() or missing() else 0)
