"""The README's tour runs as written: its `sh tour` blocks, in order, in one shell, against a
live `serve --demo` with authentication on (as `./dev serve` starts it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import running_server

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```sh tour\n(.*?)^```$", re.S | re.M)


def tour_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_a_tour_for_each_kind_of_user() -> None:
    text = "\n".join(tour_blocks())
    for client in ("demo-ehr", "demo-researcher", "demo-validator"):
        assert client in text


def test_the_readme_tour_runs_against_a_live_server(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    with running_server(
        f"sqlite:///{tmp_path / 'fhir.db'}",
        demo=True,
        auth="enabled",
        demo_keys_dir=str(keys),
        export_dir=str(tmp_path / "exports"),
    ) as url:
        work = tmp_path / "work"
        work.mkdir()
        (work / "examples").symlink_to(ROOT / "examples")
        bin_dir = Path(sys.executable).parent  # fhir-bridge beside this Python
        env = {
            **os.environ,
            "FHIR": url,
            "KEYS": str(keys),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        }
        script = "set -euo pipefail\n" + "\n".join(tour_blocks())
        done = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert (work / "report" / "report.html").stat().st_size > 10_000
    assert (work / "dataset" / "datapackage.json").is_file()
    assert list((work / "dist").glob("*.tgz"))
    out = done.stdout.replace(" ", "")
    assert '"valueQuantity"' in out  # the scored MADRS read back
    assert '"resourceType":"OperationOutcome"' in out  # the validator's answer
