"""Search SQL on real SQLite and PostgreSQL databases, with hand-checked expectations."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import astuple
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from fhir_bridge.domain.search import parse_query_string, parse_search
from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.store import includes
from fhir_bridge.store.includes import ITERATE_ROUNDS
from fhir_bridge.store.indexing import extract_index, last_updated_row
from fhir_bridge.store.schema import ddl
from fhir_bridge.store.search import SearchResult, count, find_ids, run_search
from fhir_bridge.store.staging import stage

POSTGRES_URL = os.environ.get(
    "FHIR_BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgres"]
TABLES = (
    "resources",
    "token_set_member",
    "idx_token_set",
    "idx_string",
    "idx_date",
    "idx_number",
    "idx_reference",
    "idx_uri",
)
ASSESSMENT = "https://fhir-bridge.org/fhir/CodeSystem/assessment"
VISIT = "https://fhir-bridge.org/fhir/CodeSystem/visit"
MADRS_URL = "https://fhir-bridge.org/fhir/Questionnaire/madrs"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


class Database:
    """A real database with the project schema and the store's way of writing index rows."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.seq = 0
        columns = self.conn.execute("SELECT * FROM resources LIMIT 0").description
        self.columns = [c[0] for c in columns]

    def execute(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        cursor = self.conn.execute(sql, tuple(args))
        return list(cursor.fetchall()) if cursor.description else []

    def load(self, *resources: dict[str, Any]) -> None:
        for resource in resources:
            self.seq += 1
            resource.setdefault("meta", {}).setdefault(
                "lastUpdated", f"2025-06-01T00:00:{self.seq:02d}Z"
            )
            rtype, rid = resource["resourceType"], resource["id"]
            self.remove_index(rtype, rid)
            self.execute("DELETE FROM resources WHERE resource_type = ? AND id = ?", (rtype, rid))
            values = {
                "resource_type": rtype,
                "id": rid,
                "version_id": 1,
                "last_updated": resource["meta"]["lastUpdated"],
                "deleted": False,
                "seq": self.seq,
                "data": orjson.dumps(resource),
                "method": "PUT",
            }
            names = [c for c in self.columns if c in values]
            marks = ", ".join("?" * len(names))
            self.execute(
                f"INSERT INTO resources ({', '.join(names)}) VALUES ({marks})",
                [values[n] for n in names],
            )
            staged = stage(resource, extract_index)
            updated = last_updated_row(resource["meta"]["lastUpdated"])
            tables = {
                **staged.rows,
                "token_set_member": [r for m in staged.sets.values() for r in m],
            }
            tables.setdefault("idx_date", []).append((rtype, rid, *astuple(updated)))
            for table, rows in tables.items():
                for row in rows:
                    marks = ", ".join("?" * len(row))
                    self.execute(
                        f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT DO NOTHING", row
                    )

    def remove_index(self, rtype: str, rid: str) -> None:
        for table in TABLES[2:]:
            self.execute(f"DELETE FROM {table} WHERE resource_type = ? AND id = ?", (rtype, rid))

    def delete(self, rtype: str, rid: str) -> None:
        self.seq += 1
        self.remove_index(rtype, rid)
        self.execute(
            "UPDATE resources SET deleted = ?, seq = ? WHERE resource_type = ? AND id = ?",
            (True, self.seq, rtype, rid),
        )

    def search(self, rtype: str, query: str) -> SearchResult:
        request = parse_search(rtype, parse_query_string(query))
        assert request.unknown == []
        return run_search(self.execute, request)

    def ids(self, rtype: str, query: str) -> list[str]:
        return sorted(m[1] for m in self.search(rtype, query).matches)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One schema for this test session, dropped at the end, so parallel runs don't collide."""
    schema = f"search_{uuid.uuid4().hex[:12]}"
    conn = psycopg.connect(POSTGRES_URL, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"SET search_path TO {schema}")
    for statement in ddl("postgresql"):
        conn.execute(statement)
    yield conn
    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        conn = sqlite3.connect(tmp_path / "search.db", isolation_level=None)
        conn.execute("PRAGMA synchronous=OFF")  # test data: durability is not under test
        for statement in ddl("sqlite"):
            conn.execute(statement)
        yield Database(conn, "sqlite")
        conn.close()
        return
    conn = request.getfixturevalue("postgres")
    conn.execute(f"TRUNCATE {', '.join(TABLES)}")
    yield Database(conn, "postgresql")


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    found = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


def patient(pid: str, family: str, given: str, identifier: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "https://site.example/mrn", "value": identifier}],
        "name": [{"family": family, "given": [given]}],
        **extra,
    }


def observation(oid: str, code: dict[str, Any], subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    coding("http://terminology.hl7.org/CodeSystem/observation-category", "survey")
                ]
            }
        ],
        "code": code,
        "subject": {"reference": subject},
        **extra,
    }


@pytest.fixture
def trial(db: Database) -> Database:
    """Two participants, a baseline visit, a MADRS response and scores, an MDMA dose."""
    db.load(
        patient(
            "p1", "Ångström", "Eva", "123", gender="female", birthDate="1980-05-17", active=True
        ),
        patient("p2", "Smith", "John", "456", gender="male", birthDate="1975"),
        {
            "resourceType": "ResearchStudy",
            "id": "s1",
            "status": "active",
            "title": "MDMA-assisted therapy for MDD",
        },
        {
            "resourceType": "ResearchSubject",
            "id": "rs1",
            "status": "on-study",
            "identifier": [
                {"system": "https://fhir-bridge.org/fhir/study-subject", "value": "S-001"}
            ],
            "study": {"reference": "ResearchStudy/s1"},
            "individual": {"reference": "Patient/p1"},
        },
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
            "type": [{"coding": [coding(VISIT, "baseline", "Baseline visit")]}],
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2025-03-04T09:00:00Z", "end": "2025-03-04T11:00:00Z"},
        },
        {
            "resourceType": "Questionnaire",
            "id": "q1",
            "status": "active",
            "url": MADRS_URL,
            "version": "1.0",
            "name": "MADRS",
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr1",
            "status": "completed",
            "questionnaire": f"{MADRS_URL}|1.0",
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
            "authored": "2025-03-04T10:00:00Z",
        },
        observation(
            "o1",
            {"coding": [coding(ASSESSMENT, "madrs-total", "MADRS total score")]},
            "Patient/p1",
            encounter={"reference": "Encounter/e1"},
            effectiveDateTime="2025-03-04T10:30:00+01:00",
            valueQuantity={"value": 24, "system": UCUM, "code": "{score}"},
            derivedFrom=[{"reference": "QuestionnaireResponse/qr1"}],
            hasMember=[{"reference": "Observation/o1i1"}],
            component=[{"code": {"coding": [coding(ASSESSMENT, "madrs-1")]}, "valueInteger": 3}],
        ),
        observation(
            "o1i1",
            {"coding": [coding(ASSESSMENT, "madrs-1")]},
            "Patient/p1",
            effectiveDateTime="2025-03-04T10:30:00+01:00",
            valueInteger=3,
        ),
        observation(
            "o2",
            {"coding": [coding(ASSESSMENT, "madrs-total")]},
            "Patient/p1",
            effectiveDateTime="2025-04-10",
            valueQuantity={"value": 12.5, "system": UCUM, "code": "{score}"},
        ),
        observation(
            "o3",
            {"coding": [coding(LOINC, "44261-6", "PHQ-9 total score")], "text": "PHQ-9 Gesamtwert"},
            "Patient/p2",
            status="preliminary",
            effectivePeriod={"start": "2025-02-01", "end": "2025-02-28"},
            valueQuantity={"value": 9, "system": UCUM, "code": "{score}"},
        ),
        {
            "resourceType": "Medication",
            "id": "m1",
            "code": {
                "coding": [coding("http://fdasis.nlm.nih.gov", "KE1SEN21RM")],
                "text": "midomafetamine (MDMA)",
            },
        },
        {
            "resourceType": "MedicationAdministration",
            "id": "ma1",
            "status": "completed",
            "medicationReference": {"reference": "Medication/m1"},
            "subject": {"reference": "Patient/p1"},
            "context": {"reference": "Encounter/e1"},
            "effectiveDateTime": "2025-03-04T09:15:00Z",
        },
    )
    return db


def test_token_system_and_code(trial: Database) -> None:
    assert trial.ids("Observation", f"code={ASSESSMENT}|madrs-total") == ["o1", "o2"]
    assert trial.ids("Observation", "code=madrs-total") == ["o1", "o2"]
    assert trial.ids("Observation", f"code={LOINC}|") == ["o3"]
    assert trial.ids("Observation", "code=|madrs-total") == []
    assert trial.ids("Observation", f"code={LOINC}|madrs-total") == []


def test_token_or_values_and_and_repeats(trial: Database) -> None:
    assert trial.ids("Observation", "code=madrs-total,44261-6") == ["o1", "o2", "o3"]
    assert trial.ids("Observation", "code=madrs-total,44261-6&status=preliminary") == ["o3"]
    assert trial.ids("Observation", "combo-code=madrs-total&combo-code=madrs-1") == ["o1"]


def test_combo_parameters_search_both_parts(trial: Database) -> None:
    # o1 has madrs-1 as a component code, o1i1 as its code
    assert trial.ids("Observation", "combo-code=madrs-1") == ["o1", "o1i1"]
    assert trial.ids("Observation", "combo-code=44261-6") == ["o3"]
    assert trial.ids("Observation", "combo-code:missing=false") == ["o1", "o1i1", "o2", "o3"]
    assert trial.ids("Observation", "combo-code:not=madrs-1") == ["o2", "o3"]


def test_token_not_includes_resources_without_the_value(trial: Database) -> None:
    assert trial.ids("Observation", "status:not=final") == ["o3"]
    assert trial.ids("Observation", "encounter:missing=true&code:not=madrs-1") == ["o2", "o3"]


def test_token_text_matches_display_and_concept_text(trial: Database) -> None:
    assert trial.ids("Observation", "code:text=madrs total") == ["o1"]
    assert trial.ids("Observation", "code:text=phq-9 gesamt") == ["o3"]
    assert trial.ids("Encounter", "type:text=BASELINE") == ["e1"]


def test_token_missing(trial: Database) -> None:
    assert trial.ids("Patient", "active:missing=true") == ["p2"]
    assert trial.ids("Patient", "active:missing=false") == ["p1"]
    assert trial.ids("Patient", "active=true") == ["p1"]


def test_identifier_and_gender(trial: Database) -> None:
    assert trial.ids("Patient", "identifier=https://site.example/mrn|456") == ["p2"]
    assert trial.ids("Patient", "identifier=123") == ["p1"]
    assert trial.ids("Patient", "gender=female") == ["p1"]
    assert trial.ids("ResearchSubject", "identifier=S-001") == ["rs1"]


def test_id_and_component_code(trial: Database) -> None:
    assert trial.ids("Observation", "_id=o2,o3,nope") == ["o2", "o3"]
    assert trial.ids("Observation", "component-code=madrs-1") == ["o1"]


def test_reference_forms(trial: Database) -> None:
    assert trial.ids("Observation", "subject=Patient/p2") == ["o3"]
    assert trial.ids("Observation", "subject:Patient=p2") == ["o3"]
    assert trial.ids("Observation", "patient=p2") == ["o3"]
    assert trial.ids("Observation", "subject=p2") == ["o3"]
    assert trial.ids("Observation", "encounter=Encounter/e1") == ["o1"]
    assert trial.ids("Observation", "derived-from=QuestionnaireResponse/qr1") == ["o1"]
    assert trial.ids("Observation", "has-member=Observation/o1i1") == ["o1"]
    assert trial.ids("ResearchSubject", "study=s1&individual=Patient/p1") == ["rs1"]
    assert trial.ids("MedicationAdministration", "medication=Medication/m1") == ["ma1"]
    assert trial.ids("MedicationAdministration", "context=Encounter/e1") == ["ma1"]
    assert trial.ids("Observation", "encounter:missing=false") == ["o1"]


def test_absolute_reference_matches_by_url(db: Database) -> None:
    url = "http://ehr.example/fhir/ResearchStudy/s9"
    db.load(
        {
            "resourceType": "ResearchSubject",
            "id": "rs9",
            "status": "on-study",
            "study": {"reference": url},
            "individual": {"reference": "Patient/p1"},
        }
    )
    assert db.ids("ResearchSubject", f"study={url}") == ["rs9"]
    assert db.ids("ResearchSubject", "study=http://other.example/fhir/ResearchStudy/s9") == []


def test_an_absolute_reference_is_not_this_servers_resource(db: Database) -> None:
    foreign = "http://other.example/fhir/Patient/p1"  # another server's record, not p1 here
    db.load(
        patient("p1", "A", "Ames", "Ann"),
        observation("o1", {"text": "x"}, foreign),
        observation("o2", {"text": "x"}, "Patient/p1"),
    )
    assert db.ids("Observation", "patient=p1") == ["o2"]
    assert db.ids("Observation", "subject=Patient/p1") == ["o2"]
    assert db.ids("Observation", f"patient={foreign}") == ["o1"]
    assert db.ids("Patient", "_has:Observation:patient:_id=o1") == []


def test_chains_and_has_follow_canonical_references(db: Database) -> None:
    url = "https://example.org/Questionnaire/madrs"
    db.load(
        {
            "resourceType": "Questionnaire",
            "id": "q1",
            "url": url,
            "name": "MADRS",
            "status": "active",
        },
        {
            "resourceType": "Questionnaire",
            "id": "q2",
            "url": f"{url}-2",
            "name": "SDS",
            "status": "active",
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "r1",
            "questionnaire": url,
            "status": "completed",
        },
    )
    assert db.ids("QuestionnaireResponse", "questionnaire.name=MADRS") == ["r1"]
    assert db.ids("QuestionnaireResponse", "questionnaire.name=SDS") == []
    assert db.ids("Questionnaire", "_has:QuestionnaireResponse:questionnaire:_id=r1") == ["q1"]


def test_reference_identifier_modifier(db: Database) -> None:
    db.load(
        observation(
            "x",
            {"text": "x"},
            "Patient/p1",
            performer=[{"identifier": {"system": "https://site.example/staff", "value": "D7"}}],
        )
    )
    assert db.ids("Observation", "performer:identifier=https://site.example/staff|D7") == ["x"]
    assert db.ids("Observation", "performer:identifier=D8") == []


def test_canonical_reference_by_url_and_version(trial: Database) -> None:
    assert trial.ids("QuestionnaireResponse", f"questionnaire={MADRS_URL}") == ["qr1"]
    assert trial.ids("QuestionnaireResponse", f"questionnaire={MADRS_URL}|1.0") == ["qr1"]
    assert trial.ids("QuestionnaireResponse", f"questionnaire={MADRS_URL}|2.0") == []


def test_date_precision_and_prefixes(trial: Database) -> None:
    # o1 and o1i1: 2025-03-04T09:30Z; o2: all of 2025-04-10; o3: Period Feb 1..28.
    assert trial.ids("Observation", "date=2025-03") == ["o1", "o1i1"]
    assert trial.ids("Observation", "date=2025-03-04T09:30:00Z") == ["o1", "o1i1"]
    assert trial.ids("Observation", "date=2025-04-10") == ["o2"]
    assert trial.ids("Observation", "date=2025-02-15") == []  # the Period is not inside the day
    assert trial.ids("Observation", "date=2025-02") == ["o3"]
    assert trial.ids("Observation", "date=gt2025-03-31") == ["o2"]
    assert trial.ids("Observation", "date=lt2025-03-04") == ["o3"]
    assert trial.ids("Observation", "date=ge2025-03-04") == ["o1", "o1i1", "o2"]
    assert trial.ids("Observation", "date=le2025-03-04") == ["o1", "o1i1", "o3"]
    assert trial.ids("Observation", "date=sa2025-02-27") == ["o1", "o1i1", "o2"]
    assert trial.ids("Observation", "date=eb2025-03-01") == ["o3"]
    assert trial.ids("Observation", "date=ne2025-03") == ["o2", "o3"]
    assert trial.ids("Observation", "date=gt2025-02-10&date=lt2025-02-20") == ["o3"]


def test_dates_of_other_types(trial: Database) -> None:
    assert trial.ids("Encounter", "date=2025-03-04") == ["e1"]
    assert trial.ids("Encounter", "date=ap2025-03-04") == ["e1"]
    assert trial.ids("QuestionnaireResponse", "authored=ge2025-03-04T10:00:00Z") == ["qr1"]
    assert trial.ids("MedicationAdministration", "effective-time=2025-03-04") == ["ma1"]
    assert trial.ids("Patient", "birthdate=1980") == ["p1"]
    assert trial.ids("Patient", "birthdate=1975-06") == []
    assert trial.ids("Patient", "birthdate=lt1980-01-01") == ["p2"]


def test_last_updated_profile_and_tag(db: Database) -> None:
    profile = "https://fhir-bridge.org/fhir/StructureDefinition/madrs-observation"
    db.load(
        observation(
            "a",
            {"text": "x"},
            "Patient/p1",
            meta={
                "lastUpdated": "2025-05-01T12:00:00Z",
                "profile": [profile],
                "tag": [coding("https://fhir-bridge.org/fhir/CodeSystem/tag", "import")],
            },
        ),
        observation("b", {"text": "y"}, "Patient/p1", meta={"lastUpdated": "2025-05-02T12:00:00Z"}),
    )
    assert db.ids("Observation", "_lastUpdated=2025-05-01") == ["a"]
    assert db.ids("Observation", "_lastUpdated=gt2025-05-01T12:00:00Z") == ["b"]
    assert db.ids("Observation", f"_profile={profile}") == ["a"]
    assert db.ids("Observation", "_profile:below=https://fhir-bridge.org/fhir/") == ["a"]
    assert db.ids("Observation", "_tag=import") == ["a"]


def test_quantity_prefixes_and_units(trial: Database) -> None:
    assert trial.ids("Observation", "value-quantity=24") == ["o1"]
    assert trial.ids("Observation", "value-quantity=12.5") == ["o2"]
    assert trial.ids("Observation", "value-quantity=12") == []  # 12.5 is outside [11.5, 12.5)
    assert trial.ids("Observation", "value-quantity=13") == ["o2"]  # [12.5, 13.5)
    assert trial.ids("Observation", "value-quantity=gt12.5") == ["o1"]
    assert trial.ids("Observation", "value-quantity=ge12.5") == ["o1", "o2"]
    assert trial.ids("Observation", "value-quantity=lt10") == ["o3"]
    assert trial.ids("Observation", "value-quantity=le9") == ["o3"]
    assert trial.ids("Observation", "value-quantity=ne24") == ["o2", "o3"]
    assert trial.ids("Observation", "value-quantity=ap22") == ["o1"]
    assert trial.ids("Observation", f"value-quantity=24|{UCUM}|{{score}}") == ["o1"]
    assert trial.ids("Observation", "value-quantity=24||{score}") == ["o1"]
    assert trial.ids("Observation", "value-quantity=24||mg") == []


def test_string_defaults_to_accent_insensitive_starts_with(trial: Database) -> None:
    assert trial.ids("Patient", "name=ang") == ["p1"]
    assert trial.ids("Patient", "name=ÅNGSTRÖM") == ["p1"]
    assert trial.ids("Patient", "name=eva") == ["p1"]
    assert trial.ids("Patient", "name=ngstr") == []
    assert trial.ids("Patient", "family=smi&given=jo") == ["p2"]
    assert trial.ids("ResearchStudy", "title=mdma") == ["s1"]


def test_string_exact_and_contains(trial: Database) -> None:
    assert trial.ids("Patient", "name:exact=Ångström") == ["p1"]
    assert trial.ids("Patient", "name:exact=angstrom") == []
    assert trial.ids("Patient", "name:contains=ngstr") == ["p1"]
    assert trial.ids("Patient", "name:contains=mit") == ["p2"]


def test_uri_exact_below_and_above(trial: Database) -> None:
    assert trial.ids("Questionnaire", f"url={MADRS_URL}") == ["q1"]
    assert trial.ids("Questionnaire", "url=https://fhir-bridge.org/fhir") == []
    assert trial.ids("Questionnaire", "url:below=https://fhir-bridge.org/fhir/") == ["q1"]
    assert trial.ids("Questionnaire", f"url:above={MADRS_URL}/v2") == ["q1"]
    # parent paths only: the stored url is no parent of a longer last segment
    assert trial.ids("Questionnaire", f"url:above={MADRS_URL}-v2") == []


def test_address_matches_any_of_its_parts(db: Database) -> None:
    address = {"line": ["Hauptstraße 5"], "city": "München", "postalCode": "80331"}
    db.load(patient("a", "Adams", "Ann", "9", address=[address]))
    assert db.ids("Patient", "address=hauptstrasse") == ["a"]
    assert db.ids("Patient", "address=munchen") == ["a"]
    assert db.ids("Patient", "address-city=MÜN&address-postalcode=803") == ["a"]
    assert db.ids("Patient", "address-city=berlin") == []


def test_string_contains_escapes_like_wildcards(db: Database) -> None:
    db.load(patient("u", "under_score", "A", "1"), patient("v", "underXscore", "B", "2"))
    assert db.ids("Patient", "name:contains=r_s") == ["u"]


def test_chained_parameters(trial: Database) -> None:
    assert trial.ids("Observation", "subject:Patient.identifier=456") == ["o3"]
    assert trial.ids("Observation", "subject.name=ang") == ["o1", "o1i1", "o2"]
    assert trial.ids("Observation", "patient.gender=male") == ["o3"]
    assert trial.ids("QuestionnaireResponse", "encounter.subject:Patient.name=eva") == ["qr1"]
    assert trial.ids(
        "Observation", f"derived-from:QuestionnaireResponse.questionnaire={MADRS_URL}"
    ) == ["o1"]


def test_chain_to_id_and_missing(trial: Database) -> None:
    assert trial.ids("Observation", "subject._id=p2") == ["o3"]
    assert trial.ids("Observation", "subject:Patient.active:missing=true") == ["o3"]


def test_reverse_chaining(trial: Database) -> None:
    assert trial.ids("Patient", "_has:Observation:patient:code=44261-6") == ["p2"]
    assert trial.ids("Patient", "_has:Observation:patient:code=madrs-total") == ["p1"]
    assert trial.ids("Patient", "_has:ResearchSubject:individual:study=ResearchStudy/s1") == ["p1"]
    assert (
        trial.ids(
            "Encounter", "_has:Observation:encounter:_has:Observation:has-member:code=madrs-1"
        )
        == []
    )
    assert trial.ids("Observation", "_has:Observation:has-member:code=madrs-total") == ["o1i1"]


def test_patient_is_subject_narrowed_to_patients(trial: Database) -> None:
    """`patient` reads the subject rows to Patients, and its own rows for a subject whose
    type only its `type` element gives."""
    group = observation("og", {"coding": [coding(ASSESSMENT, "madrs-total")]}, "Group/g1")
    typed = observation("ot", {"coding": [coding(ASSESSMENT, "madrs-total")]}, "urn:uuid:x")
    typed["subject"]["type"] = "Patient"
    trial.load(group, typed, {"resourceType": "Group", "id": "g1", "type": "person"})
    assert trial.ids("Observation", "patient=Patient/p2") == ["o3"]
    assert trial.ids("Observation", "patient=urn:uuid:x") == ["ot"]
    assert trial.ids("Observation", "subject=Group/g1") == ["og"]
    assert trial.ids("Observation", "patient=Group/g1") == []
    assert trial.ids("Observation", "patient:missing=true") == ["og"]
    assert trial.ids("Observation", "patient.gender=male") == ["o3"]
    assert trial.ids("Group", "_has:Observation:patient:code=madrs-total") == []
    assert trial.ids("Group", "_has:Observation:subject:code=madrs-total") == ["g1"]
    included = trial.search("Observation", "_id=o3,og&_include=Observation:patient").included
    assert [(r[0], r[1]) for r in included] == [("Patient", "p2")]
    reverse = trial.search("Patient", "_id=p2&_revinclude=Observation:patient").included
    assert [(r[0], r[1]) for r in reverse] == [("Observation", "o3")]
    assert trial.search("Group", "_id=g1&_revinclude=Observation:patient").included == []


def test_include_and_revinclude(trial: Database) -> None:
    result = trial.search(
        "Observation", "_id=o1&_include=Observation:subject&_include=Observation:encounter"
    )
    assert [m[1] for m in result.matches] == ["o1"]
    assert sorted((r[0], r[1]) for r in result.included) == [("Encounter", "e1"), ("Patient", "p1")]
    result = trial.search("Patient", "_id=p1&_revinclude=ResearchSubject:individual")
    assert [(r[0], r[1]) for r in result.included] == [("ResearchSubject", "rs1")]
    typed = trial.search("Observation", "_id=o1&_include=Observation:subject:Group")
    assert typed.included == []


def test_include_canonical_and_iterate(trial: Database) -> None:
    result = trial.search(
        "Observation",
        "_id=o1&_include=Observation:derived-from"
        "&_include:iterate=QuestionnaireResponse:questionnaire",
    )
    assert sorted((r[0], r[1]) for r in result.included) == [
        ("Questionnaire", "q1"),
        ("QuestionnaireResponse", "qr1"),
    ]
    result = trial.search("Questionnaire", "_revinclude=QuestionnaireResponse:questionnaire")
    assert [(r[0], r[1]) for r in result.included] == [("QuestionnaireResponse", "qr1")]


def test_include_wildcard(trial: Database) -> None:
    result = trial.search("MedicationAdministration", "_include=*")
    assert sorted((r[0], r[1]) for r in result.included) == [
        ("Encounter", "e1"),
        ("Medication", "m1"),
        ("Patient", "p1"),
    ]


def test_sort_by_several_keys(trial: Database) -> None:
    ordered = trial.search("Observation", "_sort=-date,_id")
    assert [m[1] for m in ordered.matches] == ["o2", "o1", "o1i1", "o3"]
    by_status = trial.search("Observation", "_sort=status,-_id")
    assert [m[1] for m in by_status.matches] == ["o2", "o1i1", "o1", "o3"]
    by_value = trial.search("Observation", "_sort=value-quantity")
    assert [m[1] for m in by_value.matches] == ["o3", "o2", "o1", "o1i1"]  # missing last
    by_name = trial.search("Patient", "_sort=-family")
    assert [m[1] for m in by_name.matches] == ["p2", "p1"]


def test_paging_follows_the_cursor_and_ignores_later_inserts(trial: Database) -> None:
    first = trial.search("Observation", "_sort=date&_count=2")
    assert [m[1] for m in first.matches] == ["o3", "o1"]
    assert first.next_cursor is not None
    trial.load(
        observation("o0", {"text": "early"}, "Patient/p1", effectiveDateTime="2024-01-01")
    )  # sorts before the cursor
    second = trial.search("Observation", f"_sort=date&_count=2&_cursor={first.next_cursor}")
    assert [m[1] for m in second.matches] == ["o1i1", "o2"]
    assert (
        second.next_cursor is None
        or trial.search("Observation", f"_sort=date&_count=2&_cursor={second.next_cursor}").matches
        == []
    )


def test_paging_by_id_visits_every_match_once(trial: Database) -> None:
    seen, cursor = [], ""
    while True:
        page = trial.search("Observation", "_count=1" + (f"&_cursor={cursor}" if cursor else ""))
        seen += [m[1] for m in page.matches]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["o1", "o1i1", "o2", "o3"]


def test_broad_criteria_walk_ids_with_the_same_results(
    trial: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fhir_bridge.store.search.BROAD_MATCHES", 2)
    assert trial.ids("Observation", "category=survey&status=final") == ["o1", "o1i1", "o2"]
    first = trial.search("Observation", "category=survey&_count=2")
    assert [m[1] for m in first.matches] == ["o1", "o1i1"]
    rest = trial.search("Observation", f"category=survey&_count=2&_cursor={first.next_cursor}")
    assert [m[1] for m in rest.matches] == ["o2", "o3"]


def all_pages(db: Database, rtype: str, query: str) -> list[str]:
    seen: list[str] = []
    cursor = ""
    while True:
        page = db.search(rtype, query + (f"&_cursor={cursor}" if cursor else ""))
        seen += [m[1] for m in page.matches]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("-value-quantity", ["o1", "o2", "o3", "o1i1"]),
        ("value-quantity", ["o3", "o2", "o1", "o1i1"]),
        ("-_lastUpdated", ["o3", "o2", "o1i1", "o1"]),
        ("code,-date", ["o3", "o1i1", "o2", "o1"]),
        ("status,value-quantity,-_id", ["o2", "o1", "o1i1", "o3"]),
    ],
)
def test_pages_of_one_follow_the_sort_across_missing_values(
    trial: Database, sort: str, expected: list[str]
) -> None:
    assert [m[1] for m in trial.search("Observation", f"_sort={sort}").matches] == expected
    assert all_pages(trial, "Observation", f"_sort={sort}&_count=1") == expected


def test_bad_cursor_is_invalid(trial: Database) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        trial.search("Observation", "_cursor=bm9wZQ")
    assert caught.value.issues[0].expression == "_cursor"


def test_total_count_and_offset(trial: Database) -> None:
    result = trial.search("Observation", "code=madrs-total&_total=accurate&_count=1")
    assert result.total == 2 and len(result.matches) == 1
    request = parse_search("Observation", [("subject", "Patient/p1")])
    assert count(trial.execute, request) == 3
    assert trial.ids("Observation", "_offset=3") == ["o3"]
    assert trial.search("Observation", "_count=0&_total=accurate").matches == []


def test_deleted_resources_are_not_found(trial: Database) -> None:
    trial.delete("Observation", "o3")
    assert trial.ids("Observation", "status:not=final") == []
    assert "o3" not in trial.ids("Observation", "")
    assert trial.ids("Observation", "_id=o3") == []


def test_find_ids_for_conditional_operations(trial: Database) -> None:
    query = "identifier=https%3A%2F%2Fsite.example%2Fmrn%7C123"
    assert find_ids(trial.execute, "Patient", query) == ["p1"]
    assert find_ids(trial.execute, "Patient", "gender=male,female") == ["p1", "p2"]
    with pytest.raises(InvalidRequestError):
        find_ids(trial.execute, "Patient", "colour=blue")
    with pytest.raises(InvalidRequestError):
        find_ids(trial.execute, "Patient", "_count=1")


def test_sqlite_plan_drives_from_the_reference_index_without_analyze(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "plan.db", isolation_level=None)
    for statement in ddl("sqlite"):
        conn.execute(statement)
    captured: list[tuple[str, Sequence[object]]] = []

    def capture(sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        if sql.startswith("SELECT COUNT(*)"):
            return conn.execute(sql, list(args)).fetchall()
        captured.append((sql, args))
        return []

    request = parse_search("Observation", [("subject", "Patient/p1"), ("code", "madrs-total")])
    run_search(capture, request)
    sql, args = captured[-1]
    plan = " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, list(args)))
    assert "SEARCH x1 USING COVERING INDEX idx_reference_match" in plan
    # the token condition probes the row's own values: (type, param, set, id) all bound
    assert (
        "SEARCH x2 USING COVERING INDEX idx_token_set_match (resource_type=? AND param=? "
        "AND set_id=? AND id=?)" in plan
    )
    assert "SCAN" not in plan
    conn.close()


def member_chain(trial: Database, length: int) -> None:
    """Observations h1 -> h2 -> ... -> h{length} through hasMember."""
    for n in range(1, length + 1):
        members = [{"reference": f"Observation/h{n + 1}"}] if n < length else []
        trial.load({"resourceType": "Observation", "id": f"h{n}", "hasMember": members})


def test_include_iterate_follows_to_a_fixed_point(trial: Database) -> None:
    member_chain(trial, 5)
    result = trial.search("Observation", "_id=h1&_include:iterate=Observation:has-member")
    assert [r[1] for r in result.included] == ["h2", "h3", "h4", "h5"]


def test_include_iterate_stops_after_a_bounded_number_of_rounds(trial: Database) -> None:
    member_chain(trial, ITERATE_ROUNDS + 5)
    result = trial.search("Observation", "_id=h1&_include:iterate=Observation:has-member")
    assert [r[1] for r in result.included] == [f"h{n}" for n in range(2, ITERATE_ROUNDS + 3)]


def test_include_iterate_stops_once_the_bound_of_results_is_reached(
    trial: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    member_chain(trial, 6)
    monkeypatch.setattr(includes, "ITERATE_RESULTS", 2)
    result = trial.search("Observation", "_id=h1&_include:iterate=Observation:has-member")
    assert [r[1] for r in result.included] == ["h2", "h3"]  # no round after reaching 2
