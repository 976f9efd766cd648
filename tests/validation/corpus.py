"""The broken-resource corpus: valid resources and mutations, each with the issue it must raise.

Every mutation breaks one rule on a copy of a valid resource; the validator must report an
error with the expected OperationOutcome issue code at the expected FHIRPath expression.
Run `python -m tests.validation.corpus` to print which ones fhir.resources (R4B) accepts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

PROFILES = Path(__file__).parent / "data" / "profiles"
CANONICAL = "https://fhir-bridge.org/fhir"
ASSESSMENT = f"{CANONICAL}/CodeSystem/assessment"
SCORE_PROFILE = f"{CANONICAL}/StructureDefinition/test-score-observation"
DOSE_PROFILE = f"{CANONICAL}/StructureDefinition/test-dose"
UUID_1 = "urn:uuid:8f2a1c3e-0b7d-4c55-9d1e-2f3a4b5c6d7e"
UUID_2 = "urn:uuid:1b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5b"


def profile_resources() -> list[dict[str, Any]]:
    return [orjson.loads(p.read_bytes()) for p in sorted(PROFILES.glob("*.json"))]


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "obs-1",
    "meta": {"profile": [SCORE_PROFILE]},
    "status": "final",
    "category": [_coding("http://terminology.hl7.org/CodeSystem/observation-category", "survey")],
    "code": {"coding": [{"system": ASSESSMENT, "code": "test-total", "display": "Test total"}]},
    "subject": {"reference": "Patient/pat-1"},
    "encounter": {"reference": "Encounter/enc-1"},
    "effectiveDateTime": "2026-03-01T10:00:00+01:00",
    "issued": "2026-03-01T10:05:00Z",
    "valueInteger": 7,
    "method": _coding(f"{CANONICAL}/CodeSystem/test-method", "clinician"),
    "note": [{"text": "complete"}],
    "derivedFrom": [{"reference": "QuestionnaireResponse/qr-1"}],
    "component": [
        {"code": _coding(ASSESSMENT, "test-1"), "valueInteger": 3},
        {"code": _coding(ASSESSMENT, "test-2"), "valueInteger": 4},
    ],
}

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-1",
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Test patient</div>',
    },
    "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "12345678901"}],
    "active": True,
    "name": [{"family": "Nordmann", "given": ["Kari"]}],
    "telecom": [{"system": "phone", "value": "+47 22 00 00 00", "use": "home"}],
    "gender": "female",
    "birthDate": "1980-05-17",
    "address": [{"use": "home", "city": "Oslo", "period": {"start": "2010-01-01"}}],
    "contact": [{"name": {"family": "Nordmann"}}],
    "communication": [{"language": _coding("urn:ietf:bcp:47", "nb")}],
    "managingOrganization": {"reference": "Organization/org-1"},
}

ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter",
    "id": "enc-1",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "subject": {"reference": "Patient/pat-1"},
    "participant": [{"individual": {"reference": "Practitioner/prac-1"}}],
    "period": {"start": "2026-03-01T09:00:00+01:00", "end": "2026-03-01T11:00:00+01:00"},
    "statusHistory": [
        {"status": "arrived", "period": {"start": "2026-03-01T09:00:00+01:00"}},
    ],
    "location": [{"location": {"reference": "Location/loc-1"}}],
    "serviceProvider": {"reference": "Organization/org-1"},
}

ADMINISTRATION: dict[str, Any] = {
    "resourceType": "MedicationAdministration",
    "id": "dose-1",
    "status": "completed",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://fdasis.nlm.nih.gov", "code": "KE1SEN21RM"}],
        "text": "midomafetamine (MDMA)",
    },
    "subject": {"reference": "Patient/pat-1"},
    "context": {"reference": "Encounter/enc-1"},
    "effectiveDateTime": "2026-03-01T10:00:00+01:00",
    "dosage": {
        "route": _coding("http://snomed.info/sct", "26643006"),
        "dose": {"value": 120, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
    },
}

RESPONSE: dict[str, Any] = {
    "resourceType": "QuestionnaireResponse",
    "id": "qr-1",
    "questionnaire": f"{CANONICAL}/Questionnaire/test",
    "status": "completed",
    "subject": {"reference": "Patient/pat-1"},
    "authored": "2026-03-01T10:00:00+01:00",
    "source": {"reference": "Patient/pat-1"},
    "item": [
        {"linkId": "1", "answer": [{"valueInteger": 3}]},
        {"linkId": "2", "answer": [{"valueInteger": 4}]},
    ],
}

BUNDLE: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": UUID_1,
            "resource": {k: v for k, v in PATIENT.items() if k != "id"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "fullUrl": UUID_2,
            "resource": {
                **{k: v for k, v in OBSERVATION.items() if k != "id"},
                "subject": {"reference": UUID_1},
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    ],
}

VALID: dict[str, dict[str, Any]] = {
    "observation": OBSERVATION,
    "patient": PATIENT,
    "encounter": ENCOUNTER,
    "administration": ADMINISTRATION,
    "response": RESPONSE,
    "bundle": BUNDLE,
}


@dataclass(frozen=True)
class Mutation:
    """One deliberate break: `ops` applied to a copy of VALID[base]."""

    name: str
    base: str
    ops: tuple[tuple[Any, ...], ...]
    expression: str
    code: str
    profiles: tuple[str, ...] = field(default=())
    needs_profile: bool = False

    def resource(self) -> dict[str, Any]:
        resource = copy.deepcopy(VALID[self.base])
        for op in self.ops:
            _apply(resource, op)
        return resource


def _walk(resource: Any, path: str) -> tuple[Any, Any]:
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    parent = resource
    for key in keys[:-1]:
        parent = parent[key]
    return parent, keys[-1]


def _apply(resource: dict[str, Any], op: tuple[Any, ...]) -> None:
    parent, key = _walk(resource, op[1])
    if op[0] == "set":
        if isinstance(parent, list) and key == len(parent):
            parent.append(copy.deepcopy(op[2]))
        else:
            parent[key] = copy.deepcopy(op[2])
    elif op[0] == "del":
        del parent[key]


def _m(
    name: str, base: str, ops: list[tuple[Any, ...]], expression: str, code: str, **kw: Any
) -> Mutation:
    return Mutation(name, base, tuple(ops), expression, code, **kw)


def S(path: str, value: Any) -> tuple[Any, ...]:  # noqa: N802 - reads like the data it builds
    return ("set", path, value)


def D(path: str) -> tuple[Any, ...]:  # noqa: N802
    return ("del", path)


OB, PA, EN, MA, QR, BU = (
    "observation",
    "patient",
    "encounter",
    "administration",
    "response",
    "bundle",
)
CONTAINED_PATIENT = {"resourceType": "Patient", "id": "p2", "active": True}
BAD_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"

MUTATIONS: list[Mutation] = [
    # unknown elements and JSON shape
    _m("unknown-root-element", OB, [S("foo", 1)], "Observation.foo", "structure"),
    _m(
        "unknown-backbone-element",
        OB,
        [S("component.0.bar", 1)],
        "Observation.component[0].bar",
        "structure",
    ),
    _m(
        "unknown-datatype-element",
        OB,
        [S("code.coding.0.sytem", "x")],
        "Observation.code.coding[0].sytem",
        "structure",
    ),
    _m(
        "unknown-choice-type",
        OB,
        [D("valueInteger"), S("valueFoo", 1)],
        "Observation.valueFoo",
        "structure",
    ),
    _m("array-for-single", OB, [S("status", ["final"])], "Observation.status", "structure"),
    _m(
        "object-for-array",
        OB,
        [S("category", _coding("http://x", "y"))],
        "Observation.category",
        "structure",
    ),
    _m("empty-array", OB, [S("category", [])], "Observation.category", "structure"),
    _m("null-in-array", OB, [S("category", [None])], "Observation.category[0]", "structure"),
    _m(
        "string-for-object", OB, [S("subject", "Patient/pat-1")], "Observation.subject", "structure"
    ),
    _m("empty-object", OB, [S("note", [{}])], "Observation.note[0]", "invariant"),
    _m(
        "id-only-object",
        PA,
        [S("maritalStatus", {"id": "x"})],
        "Patient.maritalStatus",
        "invariant",
    ),
    _m("bad-primitive-extension-shape", OB, [S("_status", "x")], "Observation.status", "structure"),
    _m(
        "primitive-extension-unknown-base",
        OB,
        [S("_foo", {"id": "a"})],
        "Observation._foo",
        "structure",
    ),
    _m(
        "contained-unknown-element",
        OB,
        [S("contained", [{**CONTAINED_PATIENT, "foo": 1}]), S("performer", [{"reference": "#p2"}])],
        "Observation.contained[0].foo",
        "structure",
    ),
    _m(
        "contained-unknown-type",
        OB,
        [S("contained", [{"resourceType": "Foo", "id": "x"}])],
        "Observation.contained[0]",
        "structure",
    ),
    _m(
        "contained-no-resource-type",
        OB,
        [S("contained", [{"id": "x"}])],
        "Observation.contained[0]",
        "structure",
    ),
    _m(
        "name-given-not-array",
        PA,
        [S("name.0.given", "Kari")],
        "Patient.name[0].given",
        "structure",
    ),
    _m("name-not-array", PA, [S("name", {"family": "X"})], "Patient.name", "structure"),
    # cardinality
    _m("status-missing", OB, [D("status")], "Observation.status", "required"),
    _m("code-missing", OB, [D("code")], "Observation.code", "required"),
    _m(
        "component-code-missing",
        OB,
        [D("component.0.code")],
        "Observation.component[0].code",
        "required",
    ),
    _m(
        "annotation-text-missing",
        OB,
        [S("note", [{"authorString": "x"}])],
        "Observation.note[0].text",
        "required",
    ),
    _m(
        "extension-url-missing",
        OB,
        [S("extension", [{"valueString": "x"}])],
        "Observation.extension[0].url",
        "required",
    ),
    _m(
        "communication-language-missing",
        PA,
        [S("communication", [{"preferred": True}])],
        "Patient.communication[0].language",
        "required",
    ),
    _m(
        "link-other-missing",
        PA,
        [S("link", [{"type": "seealso"}])],
        "Patient.link[0].other",
        "required",
    ),
    _m("encounter-status-missing", EN, [D("status")], "Encounter.status", "required"),
    _m("encounter-class-missing", EN, [D("class")], "Encounter.class", "required"),
    _m(
        "status-history-period-missing",
        EN,
        [D("statusHistory.0.period")],
        "Encounter.statusHistory[0].period",
        "required",
    ),
    _m(
        "location-location-missing",
        EN,
        [S("location", [{"status": "active"}])],
        "Encounter.location[0].location",
        "required",
    ),
    _m(
        "administration-status-missing",
        MA,
        [D("status")],
        "MedicationAdministration.status",
        "required",
    ),
    _m(
        "administration-subject-missing",
        MA,
        [D("subject")],
        "MedicationAdministration.subject",
        "required",
    ),
    _m(
        "administration-effective-missing",
        MA,
        [D("effectiveDateTime")],
        "MedicationAdministration.effective",
        "required",
    ),
    _m(
        "administration-medication-missing",
        MA,
        [D("medicationCodeableConcept")],
        "MedicationAdministration.medication",
        "required",
    ),
    _m("response-status-missing", QR, [D("status")], "QuestionnaireResponse.status", "required"),
    _m(
        "response-link-id-missing",
        QR,
        [D("item.0.linkId")],
        "QuestionnaireResponse.item[0].linkId",
        "required",
    ),
    _m("bundle-type-missing", BU, [D("type")], "Bundle.type", "required"),
    _m(
        "bundle-request-url-missing",
        BU,
        [D("entry.0.request.url")],
        "Bundle.entry[0].request.url",
        "required",
    ),
    # primitive formats and JSON types
    _m("code-number", OB, [S("status", 1)], "Observation.status", "value"),
    _m("code-empty", OB, [S("status", "")], "Observation.status", "value"),
    _m(
        "code-whitespace",
        OB,
        [S("category.0.coding.0.code", " ")],
        "Observation.category[0].coding[0].code",
        "value",
    ),
    _m("integer-string", OB, [S("valueInteger", "7")], "Observation.valueInteger", "value"),
    _m("integer-decimal", OB, [S("valueInteger", 7.5)], "Observation.valueInteger", "value"),
    _m("integer-overflow", OB, [S("valueInteger", 2**31)], "Observation.valueInteger", "value"),
    _m("integer-boolean", OB, [S("valueInteger", True)], "Observation.valueInteger", "value"),
    _m(
        "component-integer-string",
        OB,
        [S("component.1.valueInteger", "x")],
        "Observation.component[1].valueInteger",
        "value",
    ),
    _m(
        "datetime-month-13",
        OB,
        [S("effectiveDateTime", "2026-13-01")],
        "Observation.effectiveDateTime",
        "value",
    ),
    _m(
        "datetime-no-timezone",
        OB,
        [S("effectiveDateTime", "2026-03-01T10:00:00")],
        "Observation.effectiveDateTime",
        "value",
    ),
    _m(
        "datetime-words",
        OB,
        [S("effectiveDateTime", "yesterday")],
        "Observation.effectiveDateTime",
        "value",
    ),
    _m("instant-date-only", OB, [S("issued", "2026-03-01")], "Observation.issued", "value"),
    _m("instant-number", OB, [S("issued", 20260301)], "Observation.issued", "value"),
    _m("id-bad-characters", OB, [S("id", "obs_1!")], "Observation.id", "value"),
    _m("id-too-long", OB, [S("id", "a" * 65)], "Observation.id", "value"),
    _m(
        "meta-last-updated-bad",
        OB,
        [S("meta.lastUpdated", "2026-03-01 10:00")],
        "Observation.meta.lastUpdated",
        "value",
    ),
    _m(
        "canonical-with-space",
        OB,
        [S("meta.profile.0", "not a canonical")],
        "Observation.meta.profile[0]",
        "value",
    ),
    _m(
        "uri-with-space",
        OB,
        [S("code.coding.0.system", "has space")],
        "Observation.code.coding[0].system",
        "value",
    ),
    _m(
        "boolean-string",
        OB,
        [S("code.coding.0.userSelected", "yes")],
        "Observation.code.coding[0].userSelected",
        "value",
    ),
    _m("string-number", OB, [S("code.text", 5)], "Observation.code.text", "value"),
    _m(
        "string-whitespace-only", OB, [S("note.0.text", "   ")], "Observation.note[0].text", "value"
    ),
    _m("markdown-number", OB, [S("note.0.text", 1)], "Observation.note[0].text", "value"),
    _m("date-two-digit-year", PA, [S("birthDate", "80-01-01")], "Patient.birthDate", "value"),
    _m(
        "sqty-1-comparator-on-simple-quantity",
        MA,
        [S("dosage.dose.comparator", "<")],
        "MedicationAdministration.dosage.dose",
        "invariant",
    ),
    _m("date-february-30", PA, [S("birthDate", "1980-02-30")], "Patient.birthDate", "value"),
    _m(
        "date-with-time", PA, [S("birthDate", "1980-01-01T00:00:00Z")], "Patient.birthDate", "value"
    ),
    _m("boolean-as-string", PA, [S("active", "true")], "Patient.active", "value"),
    _m(
        "integer-as-string",
        PA,
        [S("multipleBirthInteger", "2")],
        "Patient.multipleBirthInteger",
        "value",
    ),
    _m(
        "base64-bad",
        PA,
        [S("photo", [{"contentType": "image/png", "data": "%%%"}])],
        "Patient.photo[0].data",
        "value",
    ),
    _m(
        "base64-empty",
        PA,
        [S("photo", [{"contentType": "image/png", "data": ""}])],
        "Patient.photo[0].data",
        "value",
    ),
    _m(
        "primitive-extensions-past-the-values",
        PA,
        [S("name.0._given", [None, {"id": "g2"}])],
        "Patient.name[0].given",
        "structure",
    ),
    _m(
        "identifier-value-number",
        PA,
        [S("identifier.0.value", 12)],
        "Patient.identifier[0].value",
        "value",
    ),
    _m("xhtml-not-div", PA, [S("text.div", "plain text")], "Patient.text.div", "value"),
    _m("xhtml-no-namespace", PA, [S("text.div", "<div>text</div>")], "Patient.text.div", "value"),
    _m(
        "decimal-string",
        EN,
        [S("length", {"value": "5", "unit": "min"})],
        "Encounter.length.value",
        "value",
    ),
    _m(
        "positive-int-zero",
        EN,
        [S("diagnosis", [{"condition": {"reference": "Condition/c"}, "rank": 0}])],
        "Encounter.diagnosis[0].rank",
        "value",
    ),
    _m(
        "response-answer-string",
        QR,
        [S("item.0.answer.0.valueInteger", "3")],
        "QuestionnaireResponse.item[0].answer[0].valueInteger",
        "value",
    ),
    _m(
        "response-authored-bad",
        QR,
        [S("authored", "01.03.2026")],
        "QuestionnaireResponse.authored",
        "value",
    ),
    _m(
        "response-canonical-space",
        QR,
        [S("questionnaire", "a b")],
        "QuestionnaireResponse.questionnaire",
        "value",
    ),
    _m(
        "dose-value-string",
        MA,
        [S("dosage.dose.value", "120")],
        "MedicationAdministration.dosage.dose.value",
        "value",
    ),
    # choice types
    _m("two-value-types", OB, [S("valueString", "x")], "Observation.valueString", "value"),
    _m(
        "two-deceased-types",
        PA,
        [S("deceasedBoolean", False), S("deceasedDateTime", "2020-01-01")],
        "Patient.deceasedDateTime",
        "value",
    ),
    _m(
        "two-effective-types",
        MA,
        [S("effectivePeriod", {"start": "2026-03-01"})],
        "MedicationAdministration.effectivePeriod",
        "value",
    ),
    _m(
        "two-answer-types",
        QR,
        [S("item.0.answer.0.valueString", "x")],
        "QuestionnaireResponse.item[0].answer[0].valueString",
        "value",
    ),
    _m(
        "extension-value-wrong-type",
        OB,
        [S("extension", [{"url": BAD_EXT, "valueString": "x"}])],
        "Observation.extension[0].valueString",
        "structure",
    ),
    _m(
        "primitive-extension-value-wrong-type",
        PA,
        [
            S(
                "_birthDate",
                {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                            "valueString": "x",
                        }
                    ]
                },
            )
        ],
        "Patient.birthDate.extension[0].valueString",
        "structure",
    ),
    # required bindings
    _m("status-not-in-value-set", OB, [S("status", "bogus")], "Observation.status", "code-invalid"),
    _m("gender-not-in-value-set", PA, [S("gender", "unknown-x")], "Patient.gender", "code-invalid"),
    _m(
        "telecom-system-not-in-value-set",
        PA,
        [S("telecom.0.system", "pager-x")],
        "Patient.telecom[0].system",
        "code-invalid",
    ),
    _m(
        "address-use-not-in-value-set",
        PA,
        [S("address.0.use", "holiday")],
        "Patient.address[0].use",
        "code-invalid",
    ),
    _m(
        "link-type-not-in-value-set",
        PA,
        [S("link", [{"other": {"reference": "Patient/x"}, "type": "twin"}])],
        "Patient.link[0].type",
        "code-invalid",
    ),
    _m(
        "identifier-use-not-in-value-set",
        PA,
        [S("identifier.0.use", "primary")],
        "Patient.identifier[0].use",
        "code-invalid",
    ),
    _m(
        "narrative-status-not-in-value-set",
        PA,
        [S("text.status", "done")],
        "Patient.text.status",
        "code-invalid",
    ),
    _m(
        "encounter-status-not-in-value-set",
        EN,
        [S("status", "done")],
        "Encounter.status",
        "code-invalid",
    ),
    _m(
        "status-history-not-in-value-set",
        EN,
        [S("statusHistory.0.status", "waiting")],
        "Encounter.statusHistory[0].status",
        "code-invalid",
    ),
    _m(
        "administration-status-not-in-value-set",
        MA,
        [S("status", "given")],
        "MedicationAdministration.status",
        "code-invalid",
    ),
    _m(
        "response-status-not-in-value-set",
        QR,
        [S("status", "done")],
        "QuestionnaireResponse.status",
        "code-invalid",
    ),
    _m("bundle-type-not-in-value-set", BU, [S("type", "bag")], "Bundle.type", "code-invalid"),
    _m(
        "request-method-not-in-value-set",
        BU,
        [S("entry.0.request.method", "FETCH")],
        "Bundle.entry[0].request.method",
        "code-invalid",
    ),
    _m(
        "entry-resource-status-not-in-value-set",
        BU,
        [S("entry.1.resource.status", "bogus")],
        "Bundle.entry[1].resource.status",
        "code-invalid",
    ),
    _m(
        "quantity-comparator-not-in-value-set",
        EN,
        [S("length", {"value": 5, "comparator": "~"})],
        "Encounter.length.comparator",
        "code-invalid",
    ),
    # references: format and target types
    _m(
        "reference-type-only",
        OB,
        [S("subject.reference", "Patient")],
        "Observation.subject.reference",
        "value",
    ),
    _m(
        "reference-unknown-type",
        OB,
        [S("subject.reference", "Foo/1")],
        "Observation.subject.reference",
        "value",
    ),
    _m(
        "reference-bad-id",
        OB,
        [S("subject.reference", "Patient/a b")],
        "Observation.subject.reference",
        "value",
    ),
    _m(
        "reference-bad-uuid",
        OB,
        [S("encounter.reference", "urn:uuid:not-a-uuid")],
        "Observation.encounter.reference",
        "value",
    ),
    _m(
        "reference-wrong-target",
        OB,
        [S("subject.reference", "Medication/m1")],
        "Observation.subject.reference",
        "structure",
    ),
    _m(
        "reference-absolute-wrong-target",
        OB,
        [S("encounter.reference", "https://ehr.example.org/fhir/Patient/1")],
        "Observation.encounter.reference",
        "structure",
    ),
    _m(
        "performer-wrong-target",
        OB,
        [S("performer", [{"reference": "Encounter/enc-1"}])],
        "Observation.performer[0].reference",
        "structure",
    ),
    _m(
        "has-member-wrong-target",
        OB,
        [S("hasMember", [{"reference": "Patient/pat-1"}])],
        "Observation.hasMember[0].reference",
        "structure",
    ),
    _m(
        "derived-from-wrong-target",
        OB,
        [S("derivedFrom.0.reference", "Patient/pat-1")],
        "Observation.derivedFrom[0].reference",
        "structure",
    ),
    _m(
        "based-on-wrong-target",
        OB,
        [S("basedOn", [{"reference": "Observation/o2"}])],
        "Observation.basedOn[0].reference",
        "structure",
    ),
    _m(
        "contained-wrong-target",
        OB,
        [S("contained", [{"resourceType": "Medication", "id": "m"}]), S("subject.reference", "#m")],
        "Observation.subject.reference",
        "structure",
    ),
    _m(
        "reference-type-element-wrong",
        OB,
        [S("subject", {"type": "Medication", "identifier": {"value": "d"}})],
        "Observation.subject.reference",
        "structure",
    ),
    _m(
        "managing-org-wrong-target",
        PA,
        [S("managingOrganization.reference", "Patient/p")],
        "Patient.managingOrganization.reference",
        "structure",
    ),
    _m(
        "practitioner-wrong-target",
        PA,
        [S("generalPractitioner", [{"reference": "Patient/p"}])],
        "Patient.generalPractitioner[0].reference",
        "structure",
    ),
    _m(
        "encounter-subject-wrong-target",
        EN,
        [S("subject.reference", "Practitioner/x")],
        "Encounter.subject.reference",
        "structure",
    ),
    _m(
        "participant-wrong-target",
        EN,
        [S("participant.0.individual.reference", "Patient/pat-1")],
        "Encounter.participant[0].individual.reference",
        "structure",
    ),
    _m(
        "service-provider-wrong-target",
        EN,
        [S("serviceProvider.reference", "Patient/pat-1")],
        "Encounter.serviceProvider.reference",
        "structure",
    ),
    _m(
        "part-of-wrong-target",
        MA,
        [S("partOf", [{"reference": "Patient/pat-1"}])],
        "MedicationAdministration.partOf[0].reference",
        "structure",
    ),
    _m(
        "response-source-wrong-target",
        QR,
        [S("source.reference", "Organization/o")],
        "QuestionnaireResponse.source.reference",
        "structure",
    ),
    _m(
        "entry-uuid-reference-bad",
        BU,
        [S("entry.1.resource.subject.reference", "urn:uuid:xyz")],
        "Bundle.entry[1].resource.subject.reference",
        "value",
    ),
    # invariants
    _m(
        "ext-1-value-and-extension",
        OB,
        [
            S(
                "extension",
                [
                    {
                        "url": "http://x",
                        "valueString": "a",
                        "extension": [{"url": "b", "valueString": "c"}],
                    }
                ],
            )
        ],
        "Observation.extension[0]",
        "invariant",
    ),
    _m(
        "ext-1-neither",
        OB,
        [S("_status", {"extension": [{"url": "http://x"}]})],
        "Observation.status.extension[0]",
        "invariant",
    ),
    _m(
        "obs-6-absent-reason-with-value",
        OB,
        [
            S(
                "dataAbsentReason",
                _coding("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown"),
            )
        ],
        "Observation",
        "invariant",
    ),
    _m(
        "obs-7-component-repeats-code",
        OB,
        [
            S(
                "component.2",
                {
                    "code": {
                        "coding": [
                            {"system": ASSESSMENT, "code": "test-total", "display": "Test total"}
                        ]
                    },
                    "valueInteger": 1,
                },
            )
        ],
        "Observation",
        "invariant",
    ),
    _m(
        "obs-3-empty-range",
        OB,
        [S("referenceRange", [{"type": _coding("http://x", "y")}])],
        "Observation.referenceRange[0]",
        "invariant",
    ),
    _m(
        "dom-2-nested-contained",
        OB,
        [
            S(
                "contained",
                [{**CONTAINED_PATIENT, "contained": [{"resourceType": "Patient", "id": "p3"}]}],
            ),
            S("performer", [{"reference": "#p2"}]),
        ],
        "Observation",
        "invariant",
    ),
    _m(
        "dom-3-unreferenced-contained",
        OB,
        [S("contained", [CONTAINED_PATIENT])],
        "Observation",
        "invariant",
    ),
    _m(
        "dom-4-contained-version",
        OB,
        [
            S("contained", [{**CONTAINED_PATIENT, "meta": {"versionId": "1"}}]),
            S("performer", [{"reference": "#p2"}]),
        ],
        "Observation",
        "invariant",
    ),
    _m(
        "dom-5-contained-security",
        OB,
        [
            S("contained", [{**CONTAINED_PATIENT, "meta": {"security": [{"code": "R"}]}}]),
            S("performer", [{"reference": "#p2"}]),
        ],
        "Observation",
        "invariant",
    ),
    _m(
        "ref-1-missing-contained",
        OB,
        [S("performer", [{"reference": "#nowhere"}])],
        "Observation.performer[0]",
        "invariant",
    ),
    _m(
        "per-1-end-before-start",
        OB,
        [
            D("effectiveDateTime"),
            S("effectivePeriod", {"start": "2026-03-02", "end": "2026-03-01"}),
        ],
        "Observation.effectivePeriod",
        "invariant",
    ),
    _m(
        "qty-3-code-without-system",
        EN,
        [S("length", {"value": 5, "code": "min"})],
        "Encounter.length",
        "invariant",
    ),
    _m(
        "rng-2-low-above-high",
        OB,
        [D("valueInteger"), S("valueRange", {"low": {"value": 5}, "high": {"value": 1}})],
        "Observation.valueRange",
        "invariant",
    ),
    _m(
        "cpt-2-value-without-system", PA, [D("telecom.0.system")], "Patient.telecom[0]", "invariant"
    ),
    _m(
        "pat-1-contact-empty",
        PA,
        [S("contact", [{"gender": "male"}])],
        "Patient.contact[0]",
        "invariant",
    ),
    _m(
        "att-1-data-without-type",
        PA,
        [S("photo", [{"data": "aGVsbG8="}])],
        "Patient.photo[0]",
        "invariant",
    ),
    _m(
        "per-1-address-period",
        PA,
        [S("address.0.period", {"start": "2020-01-01", "end": "2019-01-01"})],
        "Patient.address[0].period",
        "invariant",
    ),
    _m(
        "per-1-encounter-period",
        EN,
        [S("period.end", "2026-03-01T08:00:00+01:00")],
        "Encounter.period",
        "invariant",
    ),
    _m(
        "qrs-1-answer-and-items",
        QR,
        [S("item.0.item", [{"linkId": "1.1"}])],
        "QuestionnaireResponse.item[0]",
        "invariant",
    ),
    _m(
        "mad-1-dosage-without-dose-or-rate",
        MA,
        [S("dosage", {"text": "one tablet"})],
        "MedicationAdministration.dosage",
        "invariant",
    ),
    _m(
        "rat-1-numerator-only",
        MA,
        [S("dosage.rateRatio", {"numerator": {"value": 1}})],
        "MedicationAdministration.dosage.rateRatio",
        "invariant",
    ),
    # Bundle rules
    _m(
        "transaction-entry-without-request",
        BU,
        [D("entry.1.request")],
        "Bundle.entry[1].request",
        "required",
    ),
    _m(
        "batch-entry-without-request",
        BU,
        [S("type", "batch"), D("entry.0.request")],
        "Bundle.entry[0].request",
        "required",
    ),
    _m(
        "collection-entry-with-request",
        BU,
        [S("type", "collection"), D("entry.1.request")],
        "Bundle.entry[0].request",
        "invariant",
    ),
    _m(
        "duplicate-full-url",
        BU,
        [S("entry.1.fullUrl", UUID_1)],
        "Bundle.entry[1].fullUrl",
        "invariant",
    ),
    _m("bdl-1-total-in-transaction", BU, [S("total", 2)], "Bundle", "invariant"),
    _m(
        "bdl-2-search-in-transaction",
        BU,
        [S("entry.0.search", {"mode": "match"})],
        "Bundle",
        "invariant",
    ),
    _m(
        "bdl-4-response-in-transaction",
        BU,
        [S("entry.0.response", {"status": "201"})],
        "Bundle",
        "invariant",
    ),
    _m(
        "bdl-5-empty-entry",
        BU,
        [
            S(
                "entry.2",
                {
                    "fullUrl": "urn:uuid:0b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5c",
                    "request": {"method": "GET", "url": "Patient"},
                },
            ),
            D("entry.2.request"),
        ],
        "Bundle.entry[2]",
        "invariant",
    ),
    _m(
        "bdl-8-history-full-url",
        BU,
        [S("entry.0.fullUrl", "https://x.org/fhir/Patient/1/_history/1")],
        "Bundle.entry[0]",
        "invariant",
    ),
    _m(
        "entry-resource-unknown-element",
        BU,
        [S("entry.0.resource.foo", 1)],
        "Bundle.entry[0].resource.foo",
        "structure",
    ),
    _m(
        "entry-resource-unknown-type",
        BU,
        [S("entry.0.resource", {"resourceType": "Foo"})],
        "Bundle.entry[0].resource",
        "structure",
    ),
    _m(
        "entry-resource-not-object",
        BU,
        [S("entry.0.resource", "Patient")],
        "Bundle.entry[0].resource",
        "structure",
    ),
    # profile constraints (test profiles in data/profiles/)
    _m(
        "profile-code-pattern",
        OB,
        [S("code.coding.0.code", "other")],
        "Observation.code",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-subject-required",
        OB,
        [D("subject")],
        "Observation.subject",
        "required",
        needs_profile=True,
    ),
    _m(
        "profile-subject-target",
        OB,
        [S("subject.reference", "Group/g1")],
        "Observation.subject.reference",
        "structure",
        needs_profile=True,
    ),
    _m(
        "profile-max-zero",
        OB,
        [S("interpretation", [_coding("http://x", "H")])],
        "Observation.interpretation",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-required-binding",
        OB,
        [S("method.coding.0.code", "proxy")],
        "Observation.method",
        "code-invalid",
        needs_profile=True,
    ),
    _m(
        "profile-type-restriction",
        OB,
        [D("valueInteger"), S("valueString", "7")],
        "Observation.valueString",
        "structure",
        needs_profile=True,
    ),
    _m(
        "profile-max-value",
        OB,
        [S("valueInteger", 13), S("component.0.valueInteger", 6), S("component.1.valueInteger", 7)],
        "Observation.valueInteger",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-min-value",
        OB,
        [S("valueInteger", -1)],
        "Observation.valueInteger",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-slice-missing",
        OB,
        [D("component.0"), S("valueInteger", 4)],
        "Observation.component",
        "required",
        needs_profile=True,
    ),
    _m(
        "profile-closed-slicing",
        OB,
        [S("component.2", {"code": _coding(ASSESSMENT, "test-9"), "valueInteger": 0})],
        "Observation.component[2]",
        "structure",
        needs_profile=True,
    ),
    _m(
        "profile-slice-max",
        OB,
        [S("component.2", {"code": _coding(ASSESSMENT, "test-1"), "valueInteger": 0})],
        "Observation.component[2]",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-slice-value-max",
        OB,
        [S("component.0.valueInteger", 7), S("valueInteger", 11)],
        "Observation.component[0].valueInteger",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-slice-type",
        OB,
        [D("component.0.valueInteger"), S("component.0.valueString", "3")],
        "Observation.component[0].valueString",
        "structure",
        needs_profile=True,
    ),
    _m(
        "profile-invariant-sum",
        OB,
        [S("valueInteger", 8)],
        "Observation",
        "invariant",
        needs_profile=True,
    ),
    _m(
        "profile-mandated-by-code",
        OB,
        [D("meta"), S("valueInteger", 8)],
        "Observation",
        "invariant",
        needs_profile=True,
    ),
    _m(
        "profile-explicit-unknown",
        OB,
        [],
        "Observation",
        "processing",
        profiles=(f"{CANONICAL}/StructureDefinition/nope",),
        needs_profile=True,
    ),
    _m(
        "profile-explicit-applied",
        OB,
        [
            D("meta"),
            S("code.coding.0.code", "other"),
            S("interpretation", [_coding("http://x", "H")]),
        ],
        "Observation.interpretation",
        "value",
        profiles=(SCORE_PROFILE,),
        needs_profile=True,
    ),
    _m(
        "profile-medication-pattern",
        MA,
        [
            S("meta", {"profile": [DOSE_PROFILE]}),
            S("medicationCodeableConcept.coding.0.code", "XXX"),
        ],
        "MedicationAdministration.medicationCodeableConcept",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-medication-type",
        MA,
        [
            S("meta", {"profile": [DOSE_PROFILE]}),
            D("medicationCodeableConcept"),
            S("medicationReference", {"reference": "Medication/m"}),
        ],
        "MedicationAdministration.medicationReference",
        "structure",
        needs_profile=True,
    ),
    _m(
        "profile-mandated-context",
        MA,
        [D("context")],
        "MedicationAdministration.context",
        "required",
        needs_profile=True,
    ),
    _m(
        "profile-dose-unit-pattern",
        MA,
        [S("dosage.dose.code", "g"), S("dosage.dose.unit", "g")],
        "MedicationAdministration.dosage.dose",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-dose-max-value",
        MA,
        [S("dosage.dose.value", 300)],
        "MedicationAdministration.dosage.dose.value",
        "value",
        needs_profile=True,
    ),
    _m(
        "profile-dosage-required",
        MA,
        [D("dosage")],
        "MedicationAdministration.dosage",
        "required",
        needs_profile=True,
    ),
    _m(
        "profile-dose-required",
        MA,
        [D("dosage.dose"), S("dosage.rateQuantity", {"value": 1})],
        "MedicationAdministration.dosage.dose",
        "required",
        needs_profile=True,
    ),
    _m(
        "profile-in-bundle-entry",
        BU,
        [S("entry.1.resource.valueInteger", 8)],
        "Bundle.entry[1].resource",
        "invariant",
        needs_profile=True,
    ),
]


def fhir_resources_misses() -> list[str]:
    """Names of the mutations (outside profiles) that fhir.resources R4B accepts."""
    import pydantic

    from fhir_bridge.domain.fhir import parse_model

    missed = []
    for mutation in MUTATIONS:
        if mutation.needs_profile:
            continue
        try:
            parse_model(mutation.resource())
        except (pydantic.ValidationError, ValueError, KeyError, TypeError):
            continue
        missed.append(mutation.name)
    return missed


if __name__ == "__main__":
    structural = [m for m in MUTATIONS if not m.needs_profile]
    misses = fhir_resources_misses()
    print(f"{len(MUTATIONS)} mutations, {len(structural)} outside profiles")
    print(f"fhir.resources R4B accepts {len(misses)} of those {len(structural)}:")
    for name in misses:
        print(f"- {name}")
