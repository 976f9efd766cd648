"""Generate the SYNTHETIC example trial (examples/trial/*.json, examples/visit-scores.csv) and the
EHR message examples (examples/messages/) from mappings/, with a fixed seed.

Shaped like the Norwegian MDMA-assisted therapy proof-of-principle trial (12 participants, 7
women and 5 men, two dosing sessions, nine psychotherapy sessions, MADRS about 30 at baseline and
about 10 after treatment) but every person, date and score here is invented.

Run from the repository root: `.venv/bin/python examples/generate_trial.py [out_dir]`.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fhir_bridge.mapping import Mappings, bundle_to_table, load_mappings, score_response
from fhir_bridge.mapping.columns import ACT_CODE
from fhir_bridge.mapping.observations import study_extension
from fhir_bridge.mapping.protocol import study_identifier
from fhir_bridge.mapping.questionnaires import coding, response
from fhir_bridge.mapping.spec import CANONICAL, SID, UCUM, InstrumentSpec
from fhir_bridge.mapping.subjects import SUBJECT_SYSTEM

SEED = 20230109
# EudraCT record of the trial (CLINICAL.md 3.1): the policy the participants consented under
TRIAL_REGISTRY = "https://www.clinicaltrialsregister.eu/ctr-search/trial/2021-000805-26/NO"
OUT = Path(__file__).resolve().parent
TZ = timezone(timedelta(hours=1))
SYNTHETIC = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}
MRN_SYSTEM = "http://ehr.example.org/fhir/sid/mrn"
SEXES = ["female"] * 7 + ["male"] * 5
WITHDRAWN = 12  # this participant leaves after the first dosing session
ADVERSE_EVENT_PARTICIPANT = 3
# Mean totals per visit (baseline about 30 as in the published trial, post-treatment about 10);
# the other instruments follow the same shape. Invented numbers, for synthetic data only.
TARGETS: dict[str, dict[str, tuple[float, float]]] = {
    "madrs": {"baseline": (29.6, 4.9), "post-treatment": (10.3, 6.0), "follow-up-7m": (11.0, 7.0)},
    "sds": {"baseline": (20.0, 4.0), "post-treatment": (8.3, 5.0), "follow-up-7m": (9.0, 5.0)},
    "phq9": {"baseline": (17.0, 3.5), "post-treatment": (7.0, 4.0), "follow-up-7m": (7.5, 4.5)},
    "gad7": {"baseline": (12.0, 3.5), "post-treatment": (5.0, 3.0), "follow-up-7m": (5.5, 3.5)},
    "isi": {"baseline": (15.0, 4.0), "post-treatment": (8.0, 4.0), "follow-up-7m": (8.0, 4.5)},
    "pcl5": {"baseline": (30.0, 10.0), "post-treatment": (14.0, 8.0), "follow-up-7m": (15.0, 9.0)},
}


def urn(kind: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{SID}/{kind}|{key}')}"


def entry(resource: dict[str, Any], full_url: str, search: str) -> dict[str, Any]:
    resource.setdefault("meta", {})["tag"] = [SYNTHETIC]
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": search},
    }


def identified(resource: dict[str, Any], kind: str, key: str) -> dict[str, Any]:
    """A conditional-create entry whose identifier is `<SID>/<kind>|key`."""
    ident = {"system": f"{SID}/{kind}", "value": key}
    # identifier is 0..1 on these two types in R4; everywhere else it is a list.
    single = resource["resourceType"] in ("QuestionnaireResponse", "AdverseEvent")
    resource["identifier"] = ident if single else [ident]
    resource = {"resourceType": resource.pop("resourceType"), **resource}
    if resource["resourceType"] == "AdverseEvent":
        # R4 defines no `identifier` search parameter on AdverseEvent, so no conditional
        # create: an update with an id derived from the identifier is just as retry-safe.
        return put_entry(resource, urn(kind, key))
    return entry(resource, urn(kind, key), f"identifier={SID}/{kind}|{key}")


def put_entry(resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    resource.setdefault("meta", {})["tag"] = [SYNTHETIC]
    resource_id = full_url.removeprefix("urn:uuid:")
    resource = {"resourceType": resource["resourceType"], "id": resource_id, **resource}
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource_id}"},
    }


def bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "meta": {"tag": [SYNTHETIC]},
        "type": "transaction",
        "entry": entries,
    }


def spread(total: int, spec: InstrumentSpec, rng: random.Random) -> dict[str, int]:
    """Item scores of a sum-scored instrument adding up to `total` (summed items only)."""
    summed = [item for item in spec.items if item.summed]
    values = {item.link_id: item.min for item in summed}
    for _ in range(total - sum(values.values())):
        open_items = [i for i in summed if values[i.link_id] < i.max]
        values[rng.choice(open_items).link_id] += 1
    return values


def draw_total(spec: InstrumentSpec, visit: str, rng: random.Random) -> int:
    mean, sd = TARGETS[spec.id][visit]
    return max(spec.total.min, min(spec.total.max, round(rng.gauss(mean, sd))))


def study_entries(m: Mappings) -> tuple[list[dict[str, Any]], dict[str, str]]:
    study, plan, medication = (dict(r) for r in m.study_resources())
    for resource in (study, plan, medication):
        resource.pop("id")
    ident = study_identifier(m)
    refs = {
        "study": urn("eudract-number", ident["value"]),
        "plan": urn("plan-definition", plan["url"]),
    }
    study["protocol"] = [{"reference": refs["plan"]}]
    study["enrollment"] = [{"reference": urn("group", "cohort")}]
    return [
        entry(study, refs["study"], f"identifier={ident['system']}|{ident['value']}"),
        entry(plan, refs["plan"], f"url={plan['url']}"),
        identified(medication, "medication", "mdma"),
    ], refs


def patient(n: int, rng: random.Random) -> dict[str, Any]:
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(0, 365 * 40))
    mrn = f"SYN-{100000 + n}"
    resource = {
        "resourceType": "Patient",
        "meta": {"profile": [f"{CANONICAL}/StructureDefinition/trial-patient"]},
        "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
        "name": [
            {
                "text": f"SYNTHETIC Participant {n:02d}",
                "family": "Synthetic",
                "given": [f"Participant{n:02d}"],
            }
        ],
        "gender": SEXES[n - 1],
        "birthDate": born.isoformat(),
    }
    return entry(resource, urn("patient", mrn), f"identifier={MRN_SYSTEM}|{mrn}")


class Participant:
    """The resources of one synthetic participant, built visit by visit."""

    def __init__(self, m: Mappings, n: int, refs: dict[str, str], rng: random.Random) -> None:
        self.m, self.n, self.refs, self.rng = m, n, refs, rng
        self.subject_id = f"MDD-{n:02d}"
        self.patient = patient(n, rng)
        self.entries: list[dict[str, Any]] = []
        self.baseline = datetime(2023, 1, 9, 9, 0, tzinfo=TZ) + timedelta(days=14 * (n - 1))
        self.times: dict[str, datetime] = {}

    def visit_time(self, code: str) -> datetime:
        """Anchor visit's actual time + offset, jittered within a third of the window."""
        if code not in self.times:
            visit = self.m.visit(code)
            assert visit is not None
            if visit.anchor is None:
                self.times[code] = self.baseline
            else:
                third = visit.window_days // 3
                days = visit.offset_days + self.rng.randint(-third, third)
                self.times[code] = self.visit_time(visit.anchor) + timedelta(days=days)
        return self.times[code]

    def encounter(self, code: str, start: datetime, hours: float) -> str:
        visit = self.m.visit(code)
        assert visit is not None
        key = f"{self.subject_id}/{code}"
        self.entries.append(
            identified(
                {
                    "resourceType": "Encounter",
                    "meta": {"profile": [f"{CANONICAL}/StructureDefinition/visit-encounter"]},
                    "extension": [study_extension(self.refs["study"])],
                    "status": "finished",
                    "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
                    "type": [{"coding": [coding(f"visit:{code}", visit.display)]}],
                    "subject": {"reference": self.patient["fullUrl"]},
                    "period": {
                        "start": start.isoformat(),
                        "end": (start + timedelta(hours=hours)).isoformat(),
                    },
                },
                "visit-encounter",
                key,
            )
        )
        return str(self.entries[-1]["fullUrl"])

    def session(self, code: str, kind: str, start: datetime, encounter: str) -> None:
        self.entries.append(
            identified(
                {
                    "resourceType": "Procedure",
                    "extension": [study_extension(self.refs["study"])],
                    "status": "completed",
                    "code": {
                        "text": f"MDMA-assisted therapy {kind} psychotherapy session (90 min)"
                    },
                    "subject": {"reference": self.patient["fullUrl"]},
                    "encounter": {"reference": encounter},
                    "performedPeriod": {
                        "start": start.isoformat(),
                        "end": (start + timedelta(minutes=90)).isoformat(),
                    },
                },
                "procedure",
                f"{self.subject_id}/{code}",
            )
        )

    def dose(
        self, code: str, role: str, mg: int, when: datetime, encounter: str, part_of: str | None
    ) -> str:
        med = self.m.medication
        resource: dict[str, Any] = {
            "resourceType": "MedicationAdministration",
            "meta": {"profile": [f"{CANONICAL}/StructureDefinition/mdma-administration"]},
            "extension": [study_extension(self.refs["study"])],
        }
        if part_of:
            resource["partOf"] = [{"reference": part_of}]
        resource |= {
            "status": "completed",
            "category": {"coding": [coding(f"dose-role:{role}", role.capitalize() + " dose")]},
            "medicationCodeableConcept": {"coding": [coding(med.code)], "text": med.text},
            "subject": {"reference": self.patient["fullUrl"]},
            "context": {"reference": encounter},
            "effectiveDateTime": when.isoformat(),
            "dosage": {
                "route": {"coding": [coding(med.route, med.route_display)]},
                "dose": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"},
            },
        }
        self.entries.append(
            identified(resource, "medication-administration", f"{self.subject_id}/{code}/{role}")
        )
        return str(self.entries[-1]["fullUrl"])

    def assess(self, spec: InstrumentSpec, code: str, when: datetime, encounter: str) -> None:
        if spec.id == "cssrs":
            level = self.rng.choice([0, 0, 0, 0, 1, 1, 2]) if code == "baseline" else 0
            values = {item.link_id: int(i < level) for i, item in enumerate(spec.items)}
        else:
            values = spread(draw_total(spec, code, self.rng), spec, self.rng)
            for item in spec.items:
                if not item.summed:
                    values[item.link_id] = self.rng.randint(0, 3 if code == "baseline" else 1)
        key = f"{self.subject_id}/{code}/{spec.id}"
        qr = response(
            spec,
            values,
            subject=self.patient["fullUrl"],
            authored=(when + timedelta(minutes=30)).isoformat(),
            encounter=encounter,
            study=self.refs["study"],
        )
        qr["id"] = urn("questionnaire-response", key)
        [obs] = score_response(qr, self.m)
        del qr["id"]
        self.entries.append(identified(qr, "questionnaire-response", key))
        self.entries.append(identified(obs, "score-observation", key))

    def consent(self) -> dict[str, Any]:
        """The participant's research consent; withdrawn consent is `inactive`."""
        consent_date = (self.baseline - timedelta(days=42)).date().isoformat()
        return identified(
            {
                "resourceType": "Consent",
                # status and scope: required bindings of R4 Consent (consent-state-codes,
                # consent-scope); no verified category code exists here, so text only
                "status": "inactive" if self.n == WITHDRAWN else "active",
                "scope": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                            "code": "research",
                        }
                    ]
                },
                "category": [{"text": "Informed consent to trial participation (SYNTHETIC)"}],
                "patient": {"reference": self.patient["fullUrl"]},
                "dateTime": consent_date,
                "policy": [{"uri": TRIAL_REGISTRY}],
            },
            "consent",
            self.subject_id,
        )

    def build(self) -> list[dict[str, Any]]:
        m = self.m
        consent = self.consent()
        self.entries = [self.patient, consent]
        self.entries.append(
            identified(
                {
                    "resourceType": "ResearchSubject",
                    "meta": {
                        "profile": [f"{CANONICAL}/StructureDefinition/trial-research-subject"]
                    },
                    "status": "withdrawn" if self.n == WITHDRAWN else "off-study",
                    "period": {"start": (self.baseline - timedelta(days=42)).date().isoformat()},
                    "study": {"reference": self.refs["study"]},
                    "individual": {"reference": self.patient["fullUrl"]},
                    "consent": {"reference": consent["fullUrl"]},
                },
                "study-subject",
                self.subject_id,
            )
        )
        subject = self.entries[-1]["resource"]
        assert subject["identifier"][0]["system"] == SUBJECT_SYSTEM
        first_mg = {"dosing-1": 80 if self.rng.random() < 0.5 else 120, "dosing-2": 120}
        last = None
        for visit in m.protocol.visits:
            if self.n == WITHDRAWN and last == "dosing-1":
                break
            start = self.visit_time(visit.code)
            hours = 8 if visit.kind == "dosing" else 1.5
            encounter = self.encounter(visit.code, start, hours)
            if visit.session:
                self.session(visit.code, visit.session, start, encounter)
            if visit.kind == "dosing":
                mg = first_mg[visit.code]
                initial = self.dose(
                    visit.code, "initial", mg, start + timedelta(minutes=30), encounter, None
                )
                supplement_at = start + timedelta(minutes=30 + self.rng.randint(90, 120))
                self.dose(visit.code, "supplemental", mg // 2, supplement_at, encounter, initial)
                if self.n == ADVERSE_EVENT_PARTICIPANT and visit.code == "dosing-1":
                    self.adverse_event(start + timedelta(hours=3), encounter, initial)
            for instrument in visit.instruments:
                self.assess(m.instrument(instrument), visit.code, start, encounter)
            last = visit.code
        if self.n == WITHDRAWN:
            subject["period"]["end"] = self.visit_time("dosing-1").date().isoformat()
        else:
            subject["period"]["end"] = self.visit_time("follow-up-7m").date().isoformat()
        return self.entries

    def adverse_event(self, when: datetime, encounter: str, suspect: str) -> None:
        terminology = "http://terminology.hl7.org/CodeSystem"
        self.entries.append(
            identified(
                {
                    "resourceType": "AdverseEvent",
                    "actuality": "actual",
                    "event": {"text": "Headache after the dosing session (SYNTHETIC)"},
                    "subject": {"reference": self.patient["fullUrl"]},
                    "encounter": {"reference": encounter},
                    "date": when.isoformat(),
                    "seriousness": {
                        "coding": [
                            {
                                "system": f"{terminology}/adverse-event-seriousness",
                                "code": "Non-serious",
                                "display": "Non-serious",
                            }
                        ]
                    },
                    "severity": {
                        "coding": [
                            {
                                "system": f"{terminology}/adverse-event-severity",
                                "code": "mild",
                                "display": "Mild",
                            }
                        ]
                    },
                    "suspectEntity": [{"instance": {"reference": suspect}}],
                    "study": [{"reference": self.refs["study"]}],
                },
                "adverse-event",
                f"{self.subject_id}/1",
            )
        )


def messages(m: Mappings, participant: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Small EHR messages: a MADRS response, a dosing-session Bundle, a local-coded score."""
    local = "http://ehr.example.org/fhir/CodeSystem/local-assessment"
    madrs_qr = next(
        e["resource"]
        for e in participant
        if e["resource"]["resourceType"] == "QuestionnaireResponse"
        and e["resource"]["questionnaire"].endswith("/madrs")
    )
    qr = json.loads(json.dumps(madrs_qr))
    qr.pop("identifier")
    qr["subject"] = {"reference": "Patient/example-participant-01"}
    qr["encounter"] = {"reference": "Encounter/example-baseline-visit"}
    qr["extension"][0]["valueReference"] = {"reference": "ResearchStudy/psykforsk-mat-mdd"}
    session = [
        e
        for e in participant
        if e["resource"]["resourceType"] in ("Encounter", "MedicationAdministration")
        and e["resource"]["identifier"][0]["value"].startswith("MDD-01/dosing-1")
    ]
    study = {"reference": "ResearchStudy/psykforsk-mat-mdd"}
    dosing_entries = [participant[0]] + json.loads(json.dumps(session))
    for e in dosing_entries[1:]:
        e["resource"]["extension"][0]["valueReference"] = study
    observation = {
        "resourceType": "Observation",
        "meta": {"tag": [SYNTHETIC]},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": local, "code": "MADRS-TOT", "display": "MADRS sum"}]},
        "subject": {"reference": "Patient/example-participant-01"},
        "effectiveDateTime": "2023-04-11T10:15:00+01:00",
        "valueQuantity": {"value": 9, "unit": "{score}", "system": UCUM, "code": "{score}"},
        "component": [
            {
                "code": {"coding": [{"system": local, "code": f"MADRS-{i:02d}"}]},
                "valueInteger": value,
            }
            for i, value in enumerate([1, 2, 1, 1, 0, 1, 1, 1, 1, 0], 1)
        ],
    }
    return {
        "madrs-response.json": qr,
        "dosing-session.json": bundle(dosing_entries),
        "local-coded-observation.json": observation,
    }


def generate(out: Path = OUT, m: Mappings | None = None) -> list[Path]:
    """Write every example file under `out`; returns the paths written."""
    m = m or load_mappings()
    rng = random.Random(SEED)
    study, refs = study_entries(m)
    participants = [Participant(m, n, refs, rng) for n in range(1, 13)]
    group = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "name": "SYNTHETIC cohort of the example trial",
        "quantity": 12,
        "member": [{"entity": {"reference": p.patient["fullUrl"]}} for p in participants],
    }
    files: dict[str, Any] = {
        "trial/00-study.json": bundle(
            [*study, identified(group, "group", "cohort"), *(p.patient for p in participants)]
        ),
    }
    built = [p.build() for p in participants]
    for p, entries in zip(participants, built, strict=True):
        files[f"trial/{p.n:02d}-participant-{p.n:02d}.json"] = bundle([study[0], *entries])
    for name, resource in messages(m, built[0]).items():
        files[f"messages/{name}"] = resource
    written = []
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    csv_path = out / "visit-scores.csv"
    csv_path.write_text(
        bundle_to_table(
            [files[f"trial/{p.n:02d}-participant-{p.n:02d}.json"] for p in participants],
            "visit-scores",
            m,
        ).text,
        encoding="utf-8",
    )
    return [*written, csv_path]


if __name__ == "__main__":
    for written_path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(written_path)
