"""validate_paths: files, folders, NDJSON and Bundles → findings, summary and exit code."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import orjson

from fhir_bridge.services.validate import validate_paths
from tests.validation.corpus import BUNDLE, OBSERVATION, PATIENT

BROKEN = {**PATIENT, "gender": "unknown-x"}


def _write(path: Path, resource: dict[str, object]) -> Path:
    path.write_bytes(orjson.dumps(resource))
    return path


def _run(paths: list[Path], output_format: str = "text", **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = validate_paths(paths, output_format, out, err, **kw)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def test_valid_file_exits_zero_with_summary(tmp_path: Path) -> None:
    code, out, _ = _run([_write(tmp_path / "p.json", PATIENT)])
    assert code == 0
    assert out.splitlines()[-1] == "1 resources in 1 files: 0 errors, 0 warnings, 0 information"


def test_error_is_one_line_with_file_severity_and_expression(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.json", BROKEN)
    code, out, _ = _run([path])
    assert code == 1
    assert out.splitlines()[0] == (
        f"{path} error Patient.gender: "
        "code 'unknown-x' is not in value set http://hl7.org/fhir/ValueSet/administrative-gender"
    )


def test_ndjson_findings_carry_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "data.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in (PATIENT, PATIENT, BROKEN)) + b"\n")
    code, out, _ = _run([path])
    assert code == 1
    assert out.splitlines()[0].startswith(f"{path}:3 error Patient.gender: ")
    assert out.splitlines()[-1].startswith("3 resources in 1 files: 1 errors")


def test_folder_is_searched_for_json_and_ndjson(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "a.json", PATIENT)
    _write(tmp_path / "sub" / "b.json", BROKEN)
    (tmp_path / "notes.txt").write_text("not FHIR")
    code, out, _ = _run([tmp_path])
    assert code == 1
    assert out.splitlines()[-1].startswith("2 resources in 2 files: 1 errors")


def test_bundle_entries_are_reported_inside_the_bundle(tmp_path: Path) -> None:
    bundle = json.loads(json.dumps(BUNDLE))
    bundle["entry"][1]["resource"]["status"] = "bogus"
    code, out, _ = _run([_write(tmp_path / "tx.json", bundle)])
    assert code == 1
    assert " error Bundle.entry[1].resource.status: " in out


def test_invalid_json_is_an_error_finding(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"resourceType": "Patient",')
    code, out, _ = _run([path])
    assert code == 1
    assert out.startswith(f"{path} error -: invalid JSON")


def test_a_missing_file_is_an_error_finding_naming_why(tmp_path: Path) -> None:
    missing = [tmp_path / "gone.json", tmp_path / "gone.ndjson"]
    code, out, _ = _run(missing)
    assert code == 1
    assert out.splitlines()[:2] == [
        f"{path} error -: cannot read the file: No such file or directory" for path in missing
    ]


def test_json_format_keeps_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    path = _write(Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff.json")), BROKEN)
    code, out, _ = _run([path], "json")
    assert code == 1
    assert json.loads(out)["findings"][0]["file"] == f"{tmp_path}/bad\\xff.json"


def test_json_format_lists_findings_and_summary(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.json", BROKEN)
    code, out, _ = _run([path], "json")
    body = json.loads(out)
    assert code == 1
    assert body["summary"] == {
        "files": 1,
        "resources": 1,
        "errors": 1,
        "warnings": 0,
        "information": 0,
    }
    assert body["findings"] == [
        {
            "file": str(path),
            "line": None,
            "severity": "error",
            "code": "code-invalid",
            "expression": "Patient.gender",
            "diagnostics": "code 'unknown-x' is not in value set "
            "http://hl7.org/fhir/ValueSet/administrative-gender",
        }
    ]


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "many.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(PATIENT) for _ in range(2500)))
    code, _, err = _run([path], workers=1)
    assert code == 0
    assert err == ""


def test_parallel_run_reports_the_same_findings_in_order(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson"
    lines = [orjson.dumps(BROKEN if i % 1000 == 7 else OBSERVATION) for i in range(4500)]
    path.write_bytes(b"\n".join(lines))
    serial = _run([path], workers=1)
    parallel = _run([path], workers=2)
    assert serial == parallel
    assert serial[1].count(" error Patient.gender") == 5


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_for_big_inputs(tmp_path: Path) -> None:
    path = tmp_path / "many.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(PATIENT) for _ in range(2500)))
    err = _Terminal()
    code = validate_paths([path], "text", io.StringIO(), err, workers=1)
    assert code == 0
    assert "[##############################] 2500/2500 resources" in err.getvalue()


def test_trial_profiles_apply_by_default(tmp_path: Path) -> None:
    from fhir_bridge.mapping.loader import load_mappings
    from fhir_bridge.mapping.observations import score_observation

    spec = load_mappings().instrument("madrs")
    values = {item.link_id: 2 for item in spec.items}
    obs = score_observation(spec, values, 20, subject="Patient/p1", effective="2026-03-01")
    obs["component"][0]["valueInteger"] = 9  # items are 0-6 and the total no longer adds up
    code, out, _ = _run([_write(tmp_path / "madrs.json", obs)])
    assert code == 1
    assert " error Observation.component[0].valueInteger: value 9 is above the maximum 6" in out
    assert " error Observation: madrs-total: " in out


def test_line_numbers_hold_across_batches_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    lines = []
    for i in range(1, 1301):
        lines.append(b"" if i % 250 == 0 else orjson.dumps(BROKEN if i % 400 == 0 else PATIENT))
    path.write_bytes(b"\n".join(lines) + b"\n")
    for workers in (1, 2):
        code, out, _ = _run([path], workers=workers)
        found = [line.split(" ")[0] for line in out.splitlines() if " error " in line]
        assert found == [f"{path}:400", f"{path}:800", f"{path}:1200"]
        assert out.splitlines()[-1].startswith("1295 resources in 1 files: 3 errors")
