"""The research view over real shapes: the official R4 examples and the trial's examples."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_bridge.pseudonym import ResearchPolicy, ResearchView, load_policy
from fhir_bridge.validation import Validator
from tests.pseudonym.conftest import KEY

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = sorted((ROOT / "tests" / "validation" / "data" / "examples").glob("*.json"))
# A message Bundle whose MessageHeader is of a type with no vendored definition: the header is
# removed (what cannot be checked is not released), so bdl-12 then fails.
UNVIEWABLE = {"Bundle-10bb101f-a121-4264-a920-67be9cb82c74"}


_TYPES = {path: orjson.loads(path.read_bytes())["resourceType"] for path in OFFICIAL}
_RELEASES = ResearchView(load_policy(), KEY).releases
RELEASED = [p for p in OFFICIAL if _RELEASES(_TYPES[p]) and p.stem not in UNVIEWABLE]
WITHHELD = [p for p in OFFICIAL if not _RELEASES(_TYPES[p])]


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


@pytest.mark.parametrize("path", RELEASED, ids=[p.stem for p in RELEASED])
def test_official_example_stays_valid_r4(
    path: Path, view: ResearchView, validator: Validator
) -> None:
    resource = orjson.loads(path.read_bytes())
    out = view.apply(resource, "example", anchor="2020-01-01")
    assert [i for i in validator.validate(out) if i.is_error] == []


@pytest.mark.parametrize("path", WITHHELD, ids=[p.stem for p in WITHHELD])
def test_official_example_of_a_withheld_type_is_refused(path: Path, view: ResearchView) -> None:
    with pytest.raises(ValueError, match="is not released for research"):
        view.apply(orjson.loads(path.read_bytes()), "example")


def _stored_participant(number: int) -> list[dict[str, Any]]:
    """A participant's transaction Bundle as the server stores it: ids, relative references."""
    path = ROOT / "examples" / "trial" / f"{number:02d}-participant-{number:02d}.json"
    entries = orjson.loads(path.read_bytes())["entry"]
    ids = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'][9:]}" for e in entries}
    text = orjson.dumps([e["resource"] for e in entries]).decode()
    for full_url, reference in ids.items():
        text = text.replace(f'"{full_url}"', f'"{reference}"')
    resources: list[dict[str, Any]] = orjson.loads(text)
    for entry, resource in zip(entries, resources, strict=True):
        resource["id"] = ids[entry["fullUrl"]].split("/")[1]
    return resources


def test_trial_participant_in_study_days_has_no_identity(policy: ResearchPolicy) -> None:
    view = ResearchView(dataclasses.replace(policy, date_method="study-day"), KEY)
    resources = _stored_participant(1)
    [patient] = [r for r in resources if r["resourceType"] == "Patient"]
    [subject] = [r for r in resources if r["resourceType"] == "ResearchSubject"]
    anchor = subject["period"]["start"]
    out = [view.apply(r, patient["id"], anchor=anchor) for r in resources]
    text = orjson.dumps(out).decode()
    identity = ("SYN-100001", "Synthetic", "Participant01", "1996-03-14", patient["id"])
    assert [s for s in identity if s in text] == []
    references = {r["subject"]["reference"] for r in out if r["resourceType"] == "Observation"}
    assert references == {f"Patient/{view.pseudonym('Patient', patient['id'])}"}
    [viewed] = [r for r in out if r["resourceType"] == "ResearchSubject"]
    # enrolment 2022-11-28 is day 0, the end of participation 2023-08-17 day 262
    assert viewed["period"] == {"start": "2000-01-01", "end": "2000-09-19"}
    assert viewed["identifier"] == [
        {"system": "https://fhir-bridge.org/fhir/sid/study-subject", "value": "MDD-01"}
    ]
