"""Loading mappings/: validation of every file and the clinical definitions it exposes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fhir_bridge.config import Settings
from fhir_bridge.errors import MappingSpecError
from fhir_bridge.mapping import Mappings, load_mappings
from fhir_bridge.mapping.loader import DEFAULT_PATH


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_PATH, target)
    return target


def _edit(path: Path, change: dict[str, object]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(change)
    path.write_text(json.dumps(data), encoding="utf-8")


def _failure(root: Path) -> MappingSpecError:
    with pytest.raises(MappingSpecError) as caught:
        load_mappings(root)
    return caught.value


def test_every_file_cites_a_source() -> None:
    for path in DEFAULT_PATH.rglob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("resourceType") == "ViewDefinition":  # no `source` element: in the text
            assert "Source:" in data["description"], path
        else:
            assert data["source"], path


def test_all_instruments_load(m: Mappings) -> None:
    assert [s.id for s in m.instruments] == ["cssrs", "gad7", "isi", "madrs", "pcl5", "phq9", "sds"]


def test_malformed_instrument_names_the_file(copy: Path) -> None:
    path = copy / "instruments" / "madrs.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["items"][0]["max"] = "six"
    path.write_text(json.dumps(data), encoding="utf-8")
    error = _failure(copy)
    assert error.issues[0].expression == f"{path}:items.0.max"
    assert "madrs.json" in error.issues[0].diagnostics


def test_bands_with_a_gap_are_rejected(copy: Path) -> None:
    path = copy / "instruments" / "gad7.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["bands"][1]["min"] = 6
    path.write_text(json.dumps(data), encoding="utf-8")
    assert "without gap or overlap" in str(_failure(copy))


def test_total_range_must_match_the_items(copy: Path) -> None:
    path = copy / "instruments" / "sds.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["total"]["max"] = 44
    path.write_text(json.dumps(data), encoding="utf-8")
    assert "total range must be 0..30" in str(_failure(copy))


def test_invented_code_prefix_is_rejected(copy: Path) -> None:
    path = copy / "instruments" / "isi.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["total"]["code"] = "isi-total"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert "prefix:code" in str(_failure(copy))


def test_protocol_visit_naming_unknown_instrument_is_rejected(copy: Path) -> None:
    path = copy / "protocol" / "psykforsk-mat-mdd.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["visits"][4]["instruments"].append("hamd")
    path.write_text(json.dumps(data), encoding="utf-8")
    error = _failure(copy)
    assert "unknown 'hamd'" in str(error) and error.issues[0].expression == str(copy / "protocol")


def test_unreadable_json_is_rejected(copy: Path) -> None:
    (copy / "columns" / "visit-scores.json").write_text("{", encoding="utf-8")
    assert "visit-scores.json: not readable JSON" in str(_failure(copy))


def test_view_with_a_broken_path_names_the_file_and_element(copy: Path) -> None:
    path = copy / "views" / "scores_long.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["select"][0]["column"][1]["path"] = "getResourceKey("
    path.write_text(json.dumps(data), encoding="utf-8")
    issue = _failure(copy).issues[0]
    assert issue.expression == f"{path}:ViewDefinition.select[0].column[1].path"
    assert issue.diagnostics.startswith("scores_long.json: ViewDefinition.select[0].column[1].path")


def test_view_column_without_a_description_is_rejected(copy: Path) -> None:
    path = copy / "views" / "dosing.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["select"][0]["column"][0]["description"]
    path.write_text(json.dumps(data), encoding="utf-8")
    issue = _failure(copy).issues[0]
    assert issue.expression == f"{path}:ViewDefinition.select[0].column[0].description"
    assert issue.diagnostics == (
        "dosing.json: ViewDefinition.select[0].column[0].description: required by the codebook"
    )


def test_concept_map_target_must_exist(copy: Path) -> None:
    path = copy / "conceptmaps" / "ostfold-local.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["groups"][0]["elements"][0]["target"] = "madrs-sum"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert "unknown target 'madrs-sum'" in str(_failure(copy))


def test_severity_bands_are_exposed_as_data(m: Mappings) -> None:
    madrs = m.instrument("madrs")
    assert [(b.code, b.min, b.max) for b in madrs.bands] == [
        ("madrs-normal", 0, 6),
        ("madrs-mild", 7, 19),
        ("madrs-moderate", 20, 34),
        ("madrs-severe", 35, 60),
    ]
    band = madrs.severity(30)
    assert band is not None and band.code == "madrs-moderate"
    assert m.instrument("sds").severity(20) is None


def test_response_is_a_half_reduction_from_baseline(m: Mappings) -> None:
    madrs = m.instrument("madrs")
    assert madrs.is_response(30, 15) is True
    assert madrs.is_response(30, 16) is False
    assert m.instrument("gad7").is_response(10, 2) is None


def test_remission_threshold_defaults_to_source_and_follows_settings(m: Mappings) -> None:
    madrs = m.instrument("madrs")
    assert madrs.remission is not None and madrs.remission.setting == "remission_threshold_madrs"
    assert (madrs.is_remission(9), madrs.is_remission(10)) == (True, False)
    threshold = getattr(Settings(remission_threshold_madrs=12), madrs.remission.setting)
    assert madrs.is_remission(11, threshold=threshold) is True


def test_visit_schedule_nominal_days_follow_anchors(m: Mappings) -> None:
    protocol = m.protocol
    assert protocol.nominal_day("baseline") == 0
    assert protocol.nominal_day("dosing-2") - protocol.nominal_day("dosing-1") == 28
    assert protocol.nominal_day("post-treatment") == 91
    assert [v.visit for v in protocol.visits][:6] == ["Screening", "V0", "V1", "V2", "V3", "V4"]
