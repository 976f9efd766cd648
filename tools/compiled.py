"""Which modules are compiled with mypyc (pyproject.toml, [tool.fhir-bridge] compiled), and
whether their builds are current.

    python tools/compiled.py    exit 1 when a compiled module is missing or older than its
                                source (then `./dev build`), 0 when all are current

A build older than its source is the trap of compiled modules: Python imports the build, so
an edit would not run. The test suite refuses to start then (tests/conftest.py).
"""

from __future__ import annotations

import sys
import sysconfig
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def compiled_sources() -> list[str]:
    """The compiled modules' source paths, relative to the project root."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["tool"]["fhir-bridge"]["compiled"])


def _build_of(source: str) -> Path:
    return ROOT / (source.removesuffix(".py") + SUFFIX)


def stale() -> list[str]:
    """Sources whose build exists but is older: Python would run the old code."""
    return [
        s
        for s in compiled_sources()
        if _build_of(s).exists() and _build_of(s).stat().st_mtime < (ROOT / s).stat().st_mtime
    ]


def missing() -> list[str]:
    """Sources without a build: they run as plain Python."""
    return [s for s in compiled_sources() if not _build_of(s).exists()]


if __name__ == "__main__":
    sys.exit(1 if stale() or missing() else 0)
