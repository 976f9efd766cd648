"""Bulk Data $export over the app: kick-off checks, the async protocol, levels and filters."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_bridge.api.app import create_app
from fhir_bridge.config import Settings

FHIR = {"Content-Type": "application/fhir+json"}
ASYNC = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
HEART_RATE = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
STUDY_SUBJECT = "https://fhir-bridge.org/fhir/sid/study-subject"
BODY_WEIGHT = {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}


def make_client(database_url: str, tmp_path: Path, **settings: Any) -> TestClient:
    configured = Settings(
        database_url=database_url,
        export_dir=str(tmp_path / "exports"),
        allowed_hosts=["testserver"],
        **settings,
    )
    return TestClient(create_app(configured), base_url="http://testserver")


def create(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def observation(patient_id: str, code: dict[str, Any], value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def two_patients(client: TestClient) -> tuple[str, str]:
    first = create(client, {"resourceType": "Patient", "gender": "female"})
    second = create(client, {"resourceType": "Patient", "gender": "male"})
    create(client, observation(first, HEART_RATE, 61))
    create(client, observation(first, BODY_WEIGHT, 70))
    create(client, observation(second, HEART_RATE, 72))
    return first, second


def group_of(client: TestClient, *patients: str) -> str:
    members = [{"entity": {"reference": f"Patient/{p}"}} for p in patients]
    return create(
        client, {"resourceType": "Group", "type": "person", "actual": True, "member": members}
    )


def finished(client: TestClient, status_url: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(status_url)
        if response.status_code == 200:
            manifest: dict[str, Any] = response.json()
            return manifest
        assert response.status_code == 202, response.text
        assert response.headers["retry-after"] == "2"
        assert response.headers["x-progress"]
        assert time.monotonic() < deadline
        time.sleep(0.1)


def kickoff(client: TestClient, path: str = "$export", **params: str) -> str:
    response = client.get(f"/fhir/{path}", params=params, headers=ASYNC)
    assert response.status_code == 202, response.text
    location: str = response.headers["content-location"]
    assert location.startswith("http://testserver/fhir/$export-status/")
    return location


def exported(client: TestClient, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each output type's resources, downloaded."""
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["output"]:
        response = client.get(entry["url"], headers={"Accept": "application/fhir+ndjson"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/fhir+ndjson"
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        assert len(lines) == entry["count"]
        found.setdefault(entry["type"], []).extend(lines)
    return found


def test_system_export_runs_the_whole_async_protocol(client: TestClient) -> None:
    first, second = two_patients(client)
    manifest = finished(client, kickoff(client))
    assert manifest["request"] == "http://testserver/fhir/$export"
    assert manifest["requiresAccessToken"] is False
    assert manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")
    resources = exported(client, manifest)
    assert sorted(p["id"] for p in resources["Patient"]) == sorted([first, second])
    assert len(resources["Observation"]) == 3
    assert {entry["type"] for entry in manifest["output"]} >= {"Patient", "Observation"}


def test_kickoff_refuses_without_prefer_respond_async(client: TestClient) -> None:
    response = client.get("/fhir/$export", headers={"Accept": "application/fhir+json"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"] == (
        "A Bulk Data export needs the header Prefer: respond-async"
    )


def test_kickoff_refuses_accept_other_than_fhir_json_answering_in_kind(
    client: TestClient,
) -> None:
    response = client.get("/fhir/$export", headers={**ASYNC, "Accept": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["issue"][0]["diagnostics"] == (
        "Accept must be application/fhir+json, not 'application/json'"
    )


def test_capability_statement_declares_the_export_operations(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    assert statement["instantiates"] == [
        "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
    ]
    assert statement["rest"][0]["operation"][0] == {
        "name": "export",
        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    }
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {op["name"] for op in by_type["Group"]["operation"]} >= {"group-export", "export"}
    assert {op["name"] for op in by_type["Patient"]["operation"]} >= {"patient-export", "export"}


@pytest.mark.parametrize(
    ("params", "expression"),
    [
        ({"_outputFormat": "text/csv"}, "_outputFormat"),
        ({"_since": "yesterday"}, "_since"),
        ({"_since": "2999-01-01T00:00:00Z"}, "_since"),
        ({"_type": "Spaceship"}, "_type"),
        ({"_typeFilter": "Observation?flavour=sweet"}, "_typeFilter"),
        ({"includeAssociatedData": "_custom"}, "includeAssociatedData"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_kickoff_refuses_bad_parameters_naming_them(
    client: TestClient, params: dict[str, str], expression: str
) -> None:
    response = client.get("/fhir/$export", params=params, headers=ASYNC)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == [expression]


def test_lenient_handling_turns_unsupported_parameters_into_warnings(client: TestClient) -> None:
    two_patients(client)
    response = client.get(
        "/fhir/$export",
        params={"_type": "Patient,Spaceship", "colour": "blue"},
        headers={**ASYNC, "Prefer": "respond-async, handling=lenient"},
    )
    assert response.status_code == 202
    manifest = finished(client, response.headers["content-location"])
    assert [entry["type"] for entry in manifest["output"]] == ["Patient"]
    [error] = manifest["error"]
    outcome = orjson.loads(client.get(error["url"]).content)
    assert [issue["diagnostics"] for issue in outcome["issue"]] == [
        "_type 'Spaceship' is not a resource type this server holds",
        "The export parameter 'colour' is not supported",
    ]


def test_type_filter_and_since_narrow_the_export(client: TestClient) -> None:
    first, _ = two_patients(client)
    resources = exported(
        client,
        finished(
            client,
            kickoff(
                client, _type="Observation", _typeFilter="Observation?code=http://loinc.org|8867-4"
            ),
        ),
    )
    assert sorted(o["valueQuantity"]["value"] for o in resources["Observation"]) == [61, 72]
    marker = finished(client, kickoff(client, _type="Patient"))["transactionTime"]
    time.sleep(0.01)
    create(client, observation(first, HEART_RATE, 99))
    later = exported(client, finished(client, kickoff(client, _since=marker)))
    assert [o["valueQuantity"]["value"] for o in later["Observation"]] == [99]
    assert "Patient" not in later


def test_elements_keep_the_named_and_mandatory_elements(client: TestClient) -> None:
    two_patients(client)
    resources = exported(
        client, finished(client, kickoff(client, _type="Observation", _elements="subject"))
    )
    first = resources["Observation"][0]
    assert set(first) == {"resourceType", "id", "meta", "status", "code", "subject"}
    assert first["meta"]["tag"][-1]["code"] == "SUBSETTED"


def test_patient_and_group_exports_hold_their_patients_compartments(client: TestClient) -> None:
    first, second = two_patients(client)
    create(client, {"resourceType": "Practitioner", "name": [{"family": "Outside"}]})
    everyone = exported(client, finished(client, kickoff(client, "Patient/$export")))
    assert "Practitioner" not in everyone
    assert len(everyone["Observation"]) == 3
    group = group_of(client, first)
    members = exported(client, finished(client, kickoff(client, f"Group/{group}/$export")))
    assert [p["id"] for p in members["Patient"]] == [first]
    assert {o["subject"]["reference"] for o in members["Observation"]} == {f"Patient/{first}"}
    assert len(members["Observation"]) == 2


def test_posted_patient_parameter_limits_a_patient_export(client: TestClient) -> None:
    _, second = two_patients(client)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{second}"}},
            {"name": "_type", "valueString": "Observation"},
        ],
    }
    response = client.post("/fhir/Patient/$export", json=body, headers={**ASYNC, **FHIR})
    assert response.status_code == 202, response.text
    resources = exported(client, finished(client, response.headers["content-location"]))
    assert [o["valueQuantity"]["value"] for o in resources["Observation"]] == [72]


def test_posted_patient_parameter_of_a_group_export_keeps_those_members(
    client: TestClient,
) -> None:
    first, second = two_patients(client)
    group = group_of(client, first)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{p}"}}
            for p in (first, second, "unknown")
        ],
    }
    response = client.post(f"/fhir/Group/{group}/$export", json=body, headers={**ASYNC, **FHIR})
    assert response.status_code == 202, response.text
    manifest = finished(client, response.headers["content-location"])
    resources = exported(client, manifest)
    assert [p["id"] for p in resources["Patient"]] == [first]
    outcome = orjson.loads(client.get(manifest["error"][0]["url"]).content)
    assert outcome["issue"][0]["diagnostics"] == "patient Patient/unknown is not known"


def test_associated_provenance_of_exported_resources_comes_along(client: TestClient) -> None:
    first, second = two_patients(client)

    def provenance(target: str, recorded: str) -> str:
        return create(
            client,
            {
                "resourceType": "Provenance",
                "target": [{"reference": target}],
                "recorded": recorded,
                "agent": [{"who": {"display": "EHR interface"}}],
            },
        )

    older = provenance(f"Patient/{first}", "2024-01-01T00:00:00Z")
    newer = provenance(f"Patient/{first}", "2024-02-01T00:00:00Z")
    provenance(f"Patient/{second}", "2024-01-01T00:00:00Z")
    group = group_of(client, first)
    path = f"Group/{group}/$export"
    latest = exported(
        client,
        finished(
            client,
            kickoff(
                client, path, _type="Patient", includeAssociatedData="LatestProvenanceResources"
            ),
        ),
    )
    assert [p["id"] for p in latest["Provenance"]] == [newer]
    relevant = exported(
        client,
        finished(
            client,
            kickoff(
                client, path, _type="Patient", includeAssociatedData="RelevantProvenanceResources"
            ),
        ),
    )
    assert [p["id"] for p in relevant["Provenance"]] == [older, newer]


def test_group_export_of_an_unknown_group_is_404(client: TestClient) -> None:
    response = client.get("/fhir/Group/nope/$export", headers=ASYNC)
    assert response.status_code == 404


def test_cancel_removes_the_job_and_its_files(client: TestClient) -> None:
    two_patients(client)
    status_url = kickoff(client)
    manifest = finished(client, status_url)
    file_url = manifest["output"][0]["url"]
    response = client.delete(status_url)
    assert response.status_code == 202
    assert client.get(status_url).status_code == 404
    assert client.get(file_url).status_code == 404
    assert client.delete(status_url).status_code == 404


def test_files_download_repeatedly_until_the_job_expires(database_url: str, tmp_path: Path) -> None:
    with make_client(database_url, tmp_path, export_ttl_seconds=1) as client:
        two_patients(client)
        status_url = kickoff(client, _type="Patient")
        file_url = finished(client, status_url)["output"][0]["url"]
        first = client.get(file_url)
        assert first.status_code == 200
        assert client.get(file_url).content == first.content
        time.sleep(1.2)
        assert client.get(file_url).status_code == 404
        assert client.get(status_url).status_code == 404


def test_kickoff_beyond_the_job_limit_is_429_with_retry_after(
    database_url: str, tmp_path: Path
) -> None:
    with make_client(database_url, tmp_path, max_export_jobs=0) as client:
        response = client.get("/fhir/$export", headers=ASYNC)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.json()["issue"][0]["code"] == "throttled"


def test_output_files_split_at_the_configured_size(database_url: str, tmp_path: Path) -> None:
    with make_client(database_url, tmp_path, export_file_resources=2) as client:
        two_patients(client)
        manifest = finished(client, kickoff(client, _type="Observation"))
        assert [(e["url"].rsplit("/", 1)[1], e["count"]) for e in manifest["output"]] == [
            ("Observation-1.ndjson", 2),
            ("Observation-2.ndjson", 1),
        ]


def participant(
    client: TestClient,
    study: str,
    name: str,
    mrn: str,
    status: str = "on-study",
    end: str | None = None,
    consent: str = "permit",
) -> str:
    patient = create(
        client,
        {
            "resourceType": "Patient",
            "text": {
                "status": "generated",
                "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{name}</div>',
            },
            "identifier": [{"system": "http://hospital.example/mrn", "value": mrn}],
            "name": [{"family": name.split()[1], "given": [name.split()[0]]}],
            "telecom": [{"system": "phone", "value": "+47 555 01234"}],
            "address": [{"line": ["Tollbugata 99"], "city": "Moss"}],
            "birthDate": "1961-03-14",
        },
    )
    period = {"start": "2024-02-01", **({"end": end} if end else {})}
    create(
        client,
        {
            "resourceType": "ResearchSubject",
            "status": status,
            "period": period,
            "study": {"reference": f"ResearchStudy/{study}"},
            "individual": {"reference": f"Patient/{patient}"},
            "identifier": [{"system": STUDY_SUBJECT, "value": f"SUBJ-{mrn[-1]}"}],
        },
    )
    create(
        client,
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                        "code": "research",
                    }
                ]
            },
            "category": [{"text": "research"}],
            "patient": {"reference": f"Patient/{patient}"},
            "policy": [{"uri": "https://trial.example/consent-form-v2"}],
            "provision": {"type": consent},
        },
    )
    for day in ("2024-03-05T09:30:00+01:00", "2024-04-02T14:15:00+02:00"):
        create(
            client,
            {
                **observation(patient, HEART_RATE, 60),
                "effectiveDateTime": day,
                "note": [{"text": f"{name} called about side effects"}],
            },
        )
    return patient


def research_export(client: TestClient) -> tuple[dict[str, Any], bytes]:
    manifest = finished(client, kickoff(client, view="research"))
    text = b"".join(client.get(entry["url"]).content for entry in manifest["output"])
    return manifest, text


def test_research_export_holds_no_identities_and_keeps_intervals(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    participant(client, study, "Zebediah Quuxley", "MRN-7734219")
    manifest, text = research_export(client)
    originals = {study} | {  # every id the participant's data was stored under
        entry["resource"]["id"]
        for kind in ("Patient", "ResearchSubject", "Consent", "Observation")
        for entry in client.get(f"/fhir/{kind}/_history", params={"_count": 100}).json()["entry"]
    }
    assert len(originals) == 6
    for secret in (
        "Zebediah",
        "Quuxley",
        "MRN-7734219",
        "555 01234",
        "Tollbugata",
        "1961-03-14",
        "2024-03-05T09:30:00+01:00",  # the times differ: no shift makes one the other
        "2024-04-02T14:15:00+02:00",
        *originals,
    ):
        assert secret.encode() not in text, secret
    lines = [orjson.loads(line) for line in text.splitlines()]
    [person] = [r for r in lines if r["resourceType"] == "Patient"]
    assert len(person["birthDate"]) == 4
    codes = {c["code"] for c in person["meta"]["security"]}
    assert codes == {"PSEUDED", "REDACTED"}
    observations = [r for r in lines if r["resourceType"] == "Observation"]
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{person['id']}"}
    days = sorted(datetime.fromisoformat(o["effectiveDateTime"]) for o in observations)
    assert days[1] - days[0] == timedelta(days=28, hours=3, minutes=45)
    [subject] = [r for r in lines if r["resourceType"] == "ResearchSubject"]
    assert subject["identifier"][0]["value"] == "SUBJ-9"
    again = research_export(client)[1]
    assert sorted(again.splitlines()) == sorted(text.splitlines())


def test_research_export_follows_withdrawal_and_consent(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    participant(client, study, "Ann Stayer", "M1")
    participant(client, study, "Bo Leaver", "M2", status="withdrawn", end="2024-03-20")
    participant(client, study, "Cy Refuser", "M3", consent="deny")
    manifest, text = research_export(client)
    lines = [orjson.loads(line) for line in text.splitlines()]
    by_type: dict[str, int] = {}
    for resource in lines:
        by_type[resource["resourceType"]] = by_type.get(resource["resourceType"], 0) + 1
    assert by_type["Patient"] == 2  # the refuser is left out
    assert by_type["Observation"] == 3  # the leaver's after withdrawal too
    excluded = manifest["extension"]["https://fhir-bridge.org/fhir/export/excluded"]
    assert excluded["participants"] == {"consent-denied": 1, "cut-off-withdrawn": 1}
    assert excluded["resources"]["after-withdrawn"] == 1


def test_posted_kickoff_with_a_malformed_parameter_is_400_naming_it(client: TestClient) -> None:
    for parameter in ("not an object", {"name": "_type"}):
        body = {"resourceType": "Parameters", "parameter": [parameter]}
        response = client.post("/fhir/$export", json=body, headers={**ASYNC, **FHIR})
        assert response.status_code == 400, response.text
        assert response.json()["issue"][0]["expression"] == ["Parameters.parameter[0]"]


def test_exports_keep_decimals_as_sent(client: TestClient) -> None:
    study = create(client, {"resourceType": "ResearchStudy", "status": "active"})
    patient = participant(client, study, "Ola Nordmann", "MRN-1")
    for value in ("1.50", "1e2"):
        body = orjson.dumps(observation(patient, BODY_WEIGHT, 0)).replace(
            b'"value":0', b'"value":' + value.encode()
        )
        assert client.post("/fhir/Observation", content=body, headers=FHIR).status_code == 201
    plain = finished(client, kickoff(client, _type="Observation"))
    plain_text = b"".join(client.get(entry["url"]).content for entry in plain["output"])
    research_text = research_export(client)[1]
    for text in (plain_text, research_text):
        assert b'"value":1.50,' in text and b'"value":1e2,' in text
