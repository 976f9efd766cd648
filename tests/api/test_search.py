"""Search over HTTP: searchset Bundles, paging links, POST _search, strict handling."""

from __future__ import annotations

import base64
from typing import Any

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def seed(client: TestClient, n: int = 5) -> list[str]:
    ids = []
    for i in range(n):
        patient = {
            "resourceType": "Patient",
            "gender": "female" if i % 2 else "male",
            "identifier": [{"system": "http://hospital.example/mrn", "value": f"M{i}"}],
            "name": [{"family": f"Nordmann{i}"}],
        }
        ids.append(client.post("/fhir/Patient", json=patient, headers=FHIR).json()["id"])
    return ids


def test_search_returns_a_searchset_of_matches(client: TestClient) -> None:
    ids = seed(client)
    body = client.get("/fhir/Patient?gender=female&_total=accurate").json()
    assert body["type"] == "searchset" and body["total"] == 2
    assert {e["resource"]["id"] for e in body["entry"]} == {ids[1], ids[3]}
    assert all(e["search"]["mode"] == "match" for e in body["entry"])
    assert body["entry"][0]["fullUrl"].startswith("http://testserver/fhir/Patient/")


def test_pages_follow_next_links_without_repeats_across_inserts(client: TestClient) -> None:
    ids = seed(client, 5)
    page = client.get("/fhir/Patient?_count=2&_sort=_id").json()
    seen = [e["resource"]["id"] for e in page["entry"]]
    seed(client, 1)  # written between page fetches
    while next_link := next((k["url"] for k in page["link"] if k["relation"] == "next"), None):
        page = client.get(next_link.replace("http://testserver", "")).json()
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)


def test_post_search_equals_get(client: TestClient) -> None:
    seed(client)
    got = client.get("/fhir/Patient?gender=male&_sort=_id").json()
    posted = client.post("/fhir/Patient/_search", content="gender=male&_sort=_id", headers=FORM)
    assert [e["resource"] for e in posted.json()["entry"]] == [e["resource"] for e in got["entry"]]


def test_unknown_parameter_is_ignored_leniently_and_refused_strictly(client: TestClient) -> None:
    seed(client, 2)
    lenient = client.get("/fhir/Patient?shoe-size=44").json()
    assert len(lenient["entry"]) == 2
    assert "shoe-size" not in lenient["link"][0]["url"]
    strict = client.get("/fhir/Patient?shoe-size=44", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["shoe-size"]


def test_summary_count_and_count_zero_return_only_the_total(client: TestClient) -> None:
    seed(client, 3)
    for query in ("_summary=count", "_count=0"):  # _count=0 is _summary=count (3.1.1.5.3)
        body = client.get(f"/fhir/Patient?{query}").json()
        assert body["total"] == 3 and "entry" not in body, query


def test_elements_subsets_and_tags_the_resource(client: TestClient) -> None:
    seed(client, 1)
    resource = client.get("/fhir/Patient?_elements=gender").json()["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "gender"}
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"


def test_bad_search_value_names_the_parameter(client: TestClient) -> None:
    response = client.get("/fhir/Patient?birthdate=not-a-date")
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["birthdate"]


def test_capability_statement_lists_parameters_that_parse(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    for resource in statement["rest"][0]["resource"]:
        for param in resource.get("searchParam", []):
            response = client.get(
                f"/fhir/{resource['type']}",
                params={f"{param['name']}:missing": "true"},
                headers={"Prefer": "handling=strict"},
            )
            assert response.status_code == 200, (resource["type"], param["name"], response.text)


def test_id_missing_matches_none_or_all(client: TestClient) -> None:
    seed(client, 2)
    assert client.get("/fhir/Patient?_id:missing=true&_summary=count").json()["total"] == 0
    assert client.get("/fhir/Patient?_id:missing=false&_summary=count").json()["total"] == 2


def test_offset_then_next_links_walk_the_rest_once(client: TestClient) -> None:
    ids = seed(client, 7)
    page = client.get("/fhir/Patient?_count=2&_offset=2&_sort=_id").json()
    seen = [e["resource"]["id"] for e in page["entry"]]
    while next_link := next((k["url"] for k in page["link"] if k["relation"] == "next"), None):
        page = client.get(next_link.replace("http://testserver", "")).json()
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
    assert seen == sorted(ids)[2:]


def test_cursors_hide_sort_values_and_refuse_forgeries(client: TestClient) -> None:
    seed(client, 3)
    page = client.get("/fhir/Patient?_count=1&_sort=family").json()
    next_link = next(k["url"] for k in page["link"] if k["relation"] == "next")
    cursor = next_link.split("_cursor=")[1]
    assert "Nordmann" not in base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode(
        "latin-1"
    )
    forged = base64.urlsafe_b64encode(b'[{"a": 1}]').decode().rstrip("=")
    for bad in (forged, cursor[:-2] + "AA"):
        response = client.get(f"/fhir/Patient?_count=1&_sort=family&_cursor={bad}")
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["_cursor"]
    other_search = client.get(f"/fhir/Patient?_count=1&_sort=birthdate&_cursor={cursor}")
    assert other_search.status_code == 400


def test_post_search_needs_a_form_body(client: TestClient) -> None:
    response = client.post(
        "/fhir/Patient/_search", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 415
    assert response.json()["issue"][0]["code"] == "not-supported"


def test_empty_parameters_are_ignored_even_strictly(client: TestClient) -> None:
    seed(client, 2)
    strict = {"Prefer": "handling=strict"}
    body = client.get("/fhir/Patient?name=&gender=male&_sort=", headers=strict).json()
    assert len(body["entry"]) == 1
    assert body["link"][0]["url"] == "http://testserver/fhir/Patient?gender=male"


def score_of_a_new_patient(client: TestClient, **extra: object) -> dict[str, Any]:
    """A new Patient (returned) with one Observation about them (with `extra` elements)."""
    patient: dict[str, Any] = client.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR
    ).json()
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "MADRS total"},
        "subject": {"reference": f"Patient/{patient['id']}"},
        **extra,
    }
    client.post("/fhir/Observation", json=observation, headers=FHIR)
    return patient


def test_elements_keep_choice_and_mandatory_elements_and_spare_included_resources(
    client: TestClient,
) -> None:
    patient = score_of_a_new_patient(client, valueInteger=31, note=[{"text": "calm"}])
    query = "_elements=value&_include=Observation:subject"
    match, included = (
        e["resource"] for e in client.get(f"/fhir/Observation?{query}").json()["entry"]
    )
    assert set(match) == {"resourceType", "id", "meta", "status", "code", "valueInteger"}
    assert included == client.get(f"/fhir/Patient/{patient['id']}").json()
    text = client.get("/fhir/Observation?_summary=text").json()["entry"][0]["resource"]
    assert set(text) == {"resourceType", "id", "meta", "status", "code"}


def test_a_reference_under_this_servers_base_is_a_local_one(client: TestClient) -> None:
    patient = score_of_a_new_patient(client)
    url = f"http://testserver/fhir/Patient/{patient['id']}"
    assert client.get(f"/fhir/Observation?subject={url}&_summary=count").json()["total"] == 1
    score_of_a_new_patient(client, subject={"reference": url})  # one stored as the URL
    assert client.get(f"/fhir/Observation?subject={url}&_summary=count").json()["total"] == 2
    bare = f"http://testserver/fhir/{patient['id']}"  # the base and an id, as subject=id
    assert client.get(f"/fhir/Observation?subject={bare}&_summary=count").json()["total"] == 1


def test_an_escaped_bar_in_a_quantity_system_is_part_of_it(client: TestClient) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "dose"},
        "valueQuantity": {"value": 5, "system": "urn:a|b", "code": "mg"},
    }
    client.post("/fhir/Observation", json=observation, headers=FHIR)
    found = client.get("/fhir/Observation", params={"value-quantity": "5|urn:a\\|b|mg"}).json()
    assert len(found["entry"]) == 1


def test_a_decimal_kept_as_sent_is_searched_as_a_number(client: TestClient) -> None:
    ids = {}
    for value in ("1.50", "1e2", "2.5"):
        body = (
            '{"resourceType":"Observation","status":"final","code":{"text":"dose"},'
            f'"valueQuantity":{{"value":{value}}}}}'
        )
        ids[value] = client.post("/fhir/Observation", content=body, headers=FHIR).json()["id"]

    def found(query: str) -> set[str]:
        bundle = client.get(f"/fhir/Observation?value-quantity={query}").json()
        return {e["resource"]["id"] for e in bundle.get("entry", [])}

    assert found("1.5") == {ids["1.50"]}
    assert found("100") == {ids["1e2"]}
    assert found("gt2") == {ids["1e2"], ids["2.5"]}
    assert found("lt2") == {ids["1.50"]}
    assert found("1.500") == {ids["1.50"]}
    assert found("1.51") == set()


def test_a_body_with_a_repeated_key_is_refused_naming_it(client: TestClient) -> None:
    body = b'{"resourceType":"Patient","gender":"male","gender":"female"}'
    response = client.post("/fhir/Patient", content=body, headers=FHIR)
    assert response.status_code == 400
    assert response.json()["issue"] == [
        {
            "severity": "error",
            "code": "structure",
            "diagnostics": "The key 'gender' appears more than once in one object",
            "expression": ["Patient.gender"],
        }
    ]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0
