"""The allowed values of the trial views' coded columns with their meanings, by the name a view
column's `values` tag gives: the protocol's visits, visit labels and kinds, severity bands,
instruments, score codes, questionnaires and dose roles from mappings/, and the FHIR R4 codes
of mappings/fhir-codes.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_bridge.mapping.loader import DEFAULT_PATH, Mappings, read_json
from fhir_bridge.mapping.spec import split_code
from fhir_bridge.mapping.terminology import code_system

FHIR_CODES = DEFAULT_PATH / "fhir-codes.json"


@dataclass(frozen=True)
class ValueSet:
    name: str
    values: tuple[tuple[str, str], ...]  # (code, meaning)
    closed: bool  # only these values can occur (an R4 required binding)
    source: str

    def text(self) -> str:
        return "; ".join(f"{code} = {meaning}" for code, meaning in self.values)


def _meaning(display: str, definition: str | None) -> str:
    return f"{display} ({definition.rstrip('.')})" if definition else display


def value_sets(m: Mappings) -> dict[str, ValueSet]:
    """Every value set a view column or a computed column may name."""
    sets = [*_project(m), *_fhir()]
    return {s.name: s for s in sets}


def _project(m: Mappings) -> list[ValueSet]:
    systems = {spec.id: code_system(spec, m) for spec in m.code_systems}

    def from_system(name: str, system: str) -> ValueSet:
        resource = systems[system]
        values = tuple(
            (c["code"], _meaning(c["display"], c.get("definition"))) for c in resource["concept"]
        )
        return ValueSet(name, values, False, f"CodeSystem {resource['url']} (mappings/)")

    protocol = "mappings/protocol"
    visits = m.protocol.visits
    kinds: dict[str, list[str]] = {}
    for visit in visits:
        kinds.setdefault(visit.kind, []).append(visit.visit)
    instruments = "mappings/instruments"
    return [
        ValueSet(
            "visit",
            tuple(
                (
                    v.code,
                    f"{v.display}; {v.kind} visit, nominal study day "
                    f"{m.protocol.nominal_day(v.code)}",
                )
                for v in visits
            ),
            False,
            f"{protocol} (CodeSystem https://fhir-bridge.org/fhir/CodeSystem/visit)",
        ),
        ValueSet(
            "visit-label",
            tuple((v.visit, f"{v.display}, visit code {v.code}") for v in visits),
            False,
            protocol,
        ),
        ValueSet(
            "visit-kind",
            tuple((kind, f"visits {', '.join(labels)}") for kind, labels in kinds.items()),
            False,
            protocol,
        ),
        from_system("severity", "severity"),
        from_system("dose-role", "dose-role"),
        ValueSet(
            "instrument",
            tuple((s.id, f"{s.name}: {s.title}") for s in m.instruments),
            False,
            instruments,
        ),
        ValueSet(
            "score-code",
            tuple((split_code(s.total.code)[1], s.total.display) for s in m.instruments),
            False,
            f"{instruments} (total.code)",
        ),
        ValueSet(
            "questionnaire",
            tuple((s.questionnaire_url, f"{s.name}: {s.title}") for s in m.instruments),
            False,
            instruments,
        ),
    ]


def _fhir() -> list[ValueSet]:
    data = read_json(FHIR_CODES)
    return [
        ValueSet(
            each["id"],
            tuple(
                (c["code"], _meaning(c["display"], c.get("definition"))) for c in each["concepts"]
            ),
            each["binding"] == "required",
            f"FHIR R4 {each['url']} ({each['element']}, {each['binding']} binding)",
        )
        for each in data["value_sets"]
    ]
