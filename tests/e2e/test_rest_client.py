"""The REST core through a real FHIR client library (fhirpy) against a real uvicorn server."""

from __future__ import annotations

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome, ResourceNotFound

IDENTIFIER = {"system": "http://hospital.example/mrn", "value": "MRN-0001"}


def test_metadata_is_an_r4_capability_statement(server_url: str) -> None:
    client = SyncFHIRClient(server_url)
    statement = client.execute("metadata", method="get")
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"Patient", "Observation", "MedicationAdministration"} <= types


def test_create_read_update_vread_delete_history(server_url: str) -> None:
    client = SyncFHIRClient(server_url)
    patient = client.resource("Patient", identifier=[IDENTIFIER], gender="female")
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["gender"] == "female"

    fetched["gender"] = "male"
    fetched.save()
    assert fetched["meta"]["versionId"] == "2"
    first = client.execute(f"Patient/{patient.id}/_history/1", method="get")
    assert first["gender"] == "female"

    history = client.execute(f"Patient/{patient.id}/_history", method="get")
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']

    fetched.delete()
    with pytest.raises((ResourceNotFound, OperationOutcome)):
        client.reference("Patient", patient.id).to_resource()
    gone = httpx.get(f"{server_url}/Patient/{patient.id}")
    assert gone.status_code == 410


def test_update_with_stale_if_match_is_refused(server_url: str) -> None:
    client = SyncFHIRClient(server_url)
    patient = client.resource("Patient", gender="female")
    patient.save()
    patient["gender"] = "male"
    patient.save()  # now version 2
    stale = SyncFHIRClient(server_url, extra_headers={"If-Match": 'W/"1"'})
    outdated = stale.resource("Patient", id=patient.id, gender="other")
    # fhirpy reports every 412 as MultipleResourcesFound; the body says why
    with pytest.raises(MultipleResourcesFound, match="If-Match expected version 1"):
        outdated.save()
    assert client.reference("Patient", patient.id).to_resource()["gender"] == "male"


def test_retried_conditional_create_returns_the_first(server_url: str) -> None:
    query = f"identifier={IDENTIFIER['system']}|{IDENTIFIER['value']}"
    retrying = SyncFHIRClient(server_url, extra_headers={"If-None-Exist": query})
    first = retrying.resource("Patient", identifier=[IDENTIFIER])
    first.save()
    retry = retrying.resource("Patient", identifier=[IDENTIFIER])
    retry.save()
    assert retry.id == first.id
    count = httpx.get(f"{server_url}/Patient/_history", params={"_summary": "count"}).json()
    assert count["total"] == 1
