"""CSV → FHIR → CSV through the command line and a running server: lossless."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CSV = Path(__file__).resolve().parents[2] / "examples" / "visit-scores.csv"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_bridge", *args], capture_output=True, text=True, timeout=300
    )


def test_import_then_export_gives_the_same_table(server_url: str, tmp_path: Path) -> None:
    imported = cli("import-table", str(CSV), "--server", server_url)
    assert imported.returncode == 0, imported.stderr
    again = cli("import-table", str(CSV), "--server", server_url)  # a retried import
    assert again.returncode == 0, again.stderr
    out = tmp_path / "out.csv"
    exported = cli("export-table", "--server", server_url, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert out.read_text(encoding="utf-8") == CSV.read_text(encoding="utf-8")


def test_import_of_a_bad_table_exits_1_naming_the_cell(server_url: str, tmp_path: Path) -> None:
    lines = CSV.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    row = next(line for line in lines[1:] if line.split(",")[header.index("madrs_1")])
    cells = row.split(",")
    cells[header.index("madrs_1")] = "9"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], ",".join(cells)]) + "\n", encoding="utf-8")
    result = cli("import-table", str(bad), "--server", server_url)
    assert result.returncode == 1
    assert "madrs_1" in result.stderr


def test_unreachable_server_exits_3() -> None:
    result = cli("import-table", str(CSV), "--server", "http://127.0.0.1:9/fhir")
    assert result.returncode == 3
    assert "cannot reach the server" in result.stderr
