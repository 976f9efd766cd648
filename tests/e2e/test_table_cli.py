"""CSV → FHIR → CSV through the command line and a running server: participants resolved by
study subject id, corrections landing as new versions, bounded transactions, clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_bridge.client import FHIRClient
from fhir_bridge.mapping import load_mappings
from fhir_bridge.tables import TableWriteError, import_table
from tests.e2e.conftest import ServerURL, cli, running_server

CSV = Path(__file__).resolve().parents[2] / "examples" / "visit-scores.csv"
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def demo_url(database_url: str, tmp_path: Path) -> Iterator[ServerURL]:
    with running_server(database_url, demo=True, export_dir=str(tmp_path / "exports")) as url:
        yield url


def _total(url: str, resource_type: str, **params: str) -> int:
    bundle = httpx.get(f"{url}/{resource_type}", params={"_summary": "count", **params}).json()
    return int(bundle["total"])


def _counts(stdout: str) -> dict[str, dict[str, int]]:
    lines = stdout.strip().splitlines()
    actions = lines[0].split()
    return {
        cells[0]: dict(zip(actions, map(int, cells[1:]), strict=True))
        for cells in (line.split() for line in lines[1:])
    }


def _small_table(tmp_path: Path, rows: list[str]) -> Path:
    header = CSV.read_text(encoding="utf-8").splitlines()[0]
    width = header.count(",") + 1
    path = tmp_path / "table.csv"
    lines = [row + "," * (width - 1 - row.count(",")) for row in rows]
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def test_demo_table_imports_unchanged_and_exports_the_same(demo_url: str, tmp_path: Path) -> None:
    patients = _total(demo_url, "Patient")
    imported = cli("import-table", str(CSV), "--server", demo_url)
    assert imported.returncode == 0, imported.stderr
    counts = _counts(imported.stdout)
    assert set(counts) == {"Encounter", "Observation"}
    assert all(c["created"] == c["updated"] == c["refused"] == 0 for c in counts.values())
    assert counts["Encounter"]["unchanged"] == len(CSV.read_text().splitlines()) - 1
    assert _total(demo_url, "Patient") == patients  # no second, orphan Patient
    out = tmp_path / "out.csv"
    exported = cli("export-table", "--server", demo_url, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert out.read_text(encoding="utf-8") == CSV.read_text(encoding="utf-8")


def test_withdrawn_participant_shows_status_and_withdrawal_date(demo_url: str) -> None:
    exported = cli("export-table", "--server", demo_url)
    assert exported.returncode == 0, exported.stderr
    rows = [line.split(",") for line in exported.stdout.splitlines()]
    assert rows[0][:5] == ["subject_id", "visit", "visit_date", "status", "withdrawal_date"]
    assert {tuple(r[3:5]) for r in rows[1:] if r[0] == "MDD-12"} == {("withdrawn", "2023-06-17")}


def test_unknown_participant_is_refused_unless_enrolled(server_url: str, tmp_path: Path) -> None:
    table = _small_table(tmp_path, ["MDD-99,baseline,2023-02-01,,,3,3,3,3,3,3,3,3,3,3,30"])
    refused = cli("import-table", str(table), "--server", server_url)
    assert refused.returncode == 1
    assert "line 2, column subject_id: MDD-99 is not enrolled" in refused.stderr
    assert _total(server_url, "Patient") == 0
    enrolled = cli("import-table", str(table), "--server", server_url, "--enrol")
    assert enrolled.returncode == 0, enrolled.stderr
    counts = _counts(enrolled.stdout)
    for kind in ("Patient", "Consent", "ResearchSubject", "Encounter", "Observation"):
        assert counts[kind]["created"] == 1, kind
    subject = httpx.get(f"{server_url}/ResearchSubject").json()["entry"][0]["resource"]
    assert subject["identifier"][0]["value"] == "MDD-99"
    assert subject["individual"]["reference"].startswith("Patient/")
    assert _total(server_url, "Patient") == 1


def test_corrected_cell_lands_as_a_new_version(server_url: str, tmp_path: Path) -> None:
    first = _small_table(tmp_path, ["S01,baseline,2023-02-01,,,3,3,3,3,3,3,3,3,3,3,30"])
    assert cli("import-table", str(first), "--server", server_url, "--enrol").returncode == 0
    corrected = _small_table(tmp_path, ["S01,baseline,2023-02-01,,,5,3,3,3,3,3,3,3,3,3,32"])
    again = cli("import-table", str(corrected), "--server", server_url)
    assert again.returncode == 0, again.stderr
    counts = _counts(again.stdout)
    assert counts["Observation"] == {"created": 0, "updated": 1, "unchanged": 0, "refused": 0}
    assert counts["Encounter"]["unchanged"] == 1
    [obs] = [e["resource"] for e in httpx.get(f"{server_url}/Observation").json()["entry"]]
    assert obs["valueQuantity"]["value"] == 32 and obs["meta"]["versionId"] == "2"
    history = httpx.get(f"{server_url}/Observation/{obs['id']}/_history").json()
    assert [e["resource"]["valueQuantity"]["value"] for e in history["entry"]] == [32, 30]


def test_empty_total_with_every_item_is_stored_computed(server_url: str, tmp_path: Path) -> None:
    table = _small_table(tmp_path, ["S01,baseline,2023-02-01,,,3,3,3,3,3,3,3,3,3,3,"])
    assert cli("import-table", str(table), "--server", server_url, "--enrol").returncode == 0
    [obs] = [e["resource"] for e in httpx.get(f"{server_url}/Observation").json()["entry"]]
    assert obs["valueQuantity"]["value"] == 30 and "dataAbsentReason" not in obs


def test_file_over_the_bundle_limit_is_written_in_several_transactions(
    database_url: str, tmp_path: Path
) -> None:
    rows = [
        f"S{n:02d},{visit},2023-02-0{day},,,3,3,3,3,3,3,3,3,3,3,30"
        for n in range(1, 5)
        for day, visit in ((1, "baseline"), (2, "post-treatment"))
    ]
    table = _small_table(tmp_path, rows)
    with running_server(database_url, max_bundle_entries="10") as url:
        result = cli("import-table", str(table), "--server", url, "--enrol")
        assert result.returncode == 0, result.stderr
        assert _total(url, "Observation") == 8 and _total(url, "ResearchSubject") == 4


class _FailingSecondWrite(httpx.HTTPTransport):
    """The real server, with the connection lost on the second transaction posted."""

    def __init__(self) -> None:
        super().__init__()
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts += 1
            if self.posts == 2:
                raise httpx.ConnectError("connection lost", request=request)
        return super().handle_request(request)


def _client(url: str, transport: httpx.HTTPTransport | None = None) -> FHIRClient:
    client = FHIRClient(url)
    if transport is not None:
        client._http = httpx.Client(transport=transport, headers=client._http.headers)
    return client


def test_failed_write_names_stored_lines_and_rerun_finishes(
    server_url: str, tmp_path: Path
) -> None:
    table = _small_table(
        tmp_path,
        [
            "S01,baseline,2023-02-01,,,3,3,3,3,3,3,3,3,3,3,30",
            "S02,baseline,2023-02-02,,,2,2,2,2,2,2,2,2,2,2,20",
            "S02,post-treatment,2023-05-02,,,1,1,1,1,1,1,1,1,1,1,10",
        ],
    )
    text, m = table.read_text(encoding="utf-8"), load_mappings()
    with _client(server_url, _FailingSecondWrite()) as client:
        with pytest.raises(TableWriteError) as failed:
            import_table(client, text, "visit-scores", m, enrol=True)
    assert "Stored: lines 2; not stored: lines 3-4" in str(failed.value)
    with _client(server_url) as client:
        result = import_table(client, text, "visit-scores", m, enrol=True)
    assert result.counts["Observation"] == {"created": 2, "unchanged": 1}
    assert result.counts["ResearchSubject"] == {"created": 1}
    assert _total(server_url, "Observation") == 3 and _total(server_url, "Patient") == 2


def test_export_names_an_encounter_without_study_subject_id_and_goes_on(
    demo_url: str, tmp_path: Path
) -> None:
    patient = httpx.post(f"{demo_url}/Patient", json={"resourceType": "Patient"}, headers=FHIR)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [
            {
                "coding": [
                    {"system": "https://fhir-bridge.org/fhir/CodeSystem/visit", "code": "baseline"}
                ]
            }
        ],
        "subject": {"reference": f"Patient/{patient.json()['id']}"},
        "period": {"start": "2023-03-01"},
    }
    posted = httpx.post(f"{demo_url}/Encounter", json=encounter, headers=FHIR)
    assert posted.status_code == 201, posted.text
    out = tmp_path / "out.csv"
    exported = cli("export-table", "--server", demo_url, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert f"Encounter/{posted.json()['id']}" in exported.stderr
    assert "no study subject id" in exported.stderr
    assert out.read_text(encoding="utf-8") == CSV.read_text(encoding="utf-8")


def test_missing_file_is_named_without_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    result = cli("import-table", str(missing), "--server", "http://127.0.0.1:9/fhir")
    assert result.returncode == 1
    assert f"cannot read {missing}: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_names_the_unknown_map_and_refuses_an_empty_file(
    server_url: str, tmp_path: Path
) -> None:
    bad_map = cli("export-table", "--map", "nope", "--server", server_url)
    assert bad_map.returncode == 1 and "unknown column map 'nope'" in bad_map.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    result = cli("import-table", str(empty), "--server", server_url)
    assert result.returncode == 1 and "line 1: the file is empty" in result.stderr
    assert "Traceback" not in bad_map.stderr + result.stderr


def test_headerless_file_is_said_once(server_url: str, tmp_path: Path) -> None:
    lines = CSV.read_text(encoding="utf-8").splitlines()[1:4]
    table = tmp_path / "no-header.csv"
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("import-table", str(table), "--server", server_url)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error line 1: line 1 is not a header: it names none of the columns of map "
        "'visit-scores' (expected subject_id, visit, visit_date, ...)"
    ]


def test_server_without_fhir_path_is_explained(server_url: str) -> None:
    root = server_url.removesuffix("/fhir")
    result = cli("import-table", str(CSV), "--server", root)
    assert result.returncode == 1
    assert f"did you mean {root}/fhir?" in result.stderr


def test_unreachable_server_exits_3_naming_the_url() -> None:
    result = cli("import-table", str(CSV), "--server", "http://127.0.0.1:9/fhir")
    assert result.returncode == 3
    assert "cannot reach the server at http://127.0.0.1:9/fhir" in result.stderr


def test_default_server_comes_from_the_environment() -> None:
    result = cli("export-table", env={"FHIR_BRIDGE_SERVER": "http://127.0.0.1:9/fhir"})
    assert result.returncode == 3
    assert "cannot reach the server at http://127.0.0.1:9/fhir" in result.stderr
