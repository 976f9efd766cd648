"""StructureDefinition differentials of the project profiles, generated from the specs: one
score Observation profile per instrument, MDMA administration, trial patient, research subject
and visit Encounter. https://hl7.org/fhir/R4/profiling.html"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_bridge.mapping.observations import OBSERVATION_CATEGORY, RESEARCH_STUDY_EXT
from fhir_bridge.mapping.questionnaires import coding
from fhir_bridge.mapping.spec import CANONICAL, SID, UCUM, InstrumentSpec, ItemSpec, split_code

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

CORE = "http://hl7.org/fhir/StructureDefinition"
MEDICATION_PROFILE = "mdma-medication"
SURVEY_PATTERN = {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}


def _sd(
    m: Mappings,
    name: str,
    resource_type: str,
    title: str,
    description: str,
    elements: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": name,
        "url": f"{CANONICAL}/StructureDefinition/{name}",
        "version": m.ig.version,
        "name": "".join(part.capitalize() for part in name.split("-")),
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": m.ig.publisher,
        "description": description,
        "fhirVersion": m.ig.fhir_version,
        "kind": "resource",
        "abstract": False,
        "type": resource_type,
        "baseDefinition": f"{CORE}/{resource_type}",
        "derivation": "constraint",
        "differential": {"element": elements},
    }


def _el(element_id: str, **rules: Any) -> dict[str, Any]:
    path = ".".join(part.split(":")[0] for part in element_id.split("."))
    element: dict[str, Any] = {"id": element_id, "path": path}
    if ":" in element_id.rsplit(".", 1)[-1]:
        element["sliceName"] = element_id.rsplit(":", 1)[-1]
    element.update(rules)
    return element


def _ref(*targets: str) -> list[dict[str, Any]]:
    return [{"code": "Reference", "targetProfile": [f"{CORE}/{t}" for t in targets]}]


def _study_slice(resource_type: str, min_count: int) -> list[dict[str, Any]]:
    return [
        _el(
            f"{resource_type}.extension",
            slicing={"discriminator": [{"type": "value", "path": "url"}], "rules": "open"},
        ),
        _el(
            f"{resource_type}.extension:researchStudy",
            min=min_count,
            max="1",
            type=[{"code": "Extension", "profile": [RESEARCH_STUDY_EXT]}],
        ),
    ]


def _item_filter(items: list[ItemSpec]) -> str:
    tests = " or ".join(
        "(system = '{}' and code = '{}')".format(*split_code(item.code)) for item in items
    )
    return f"component.where(code.coding.exists({tests}))"


def _total_invariant(spec: InstrumentSpec) -> dict[str, Any]:
    # FHIRPath in R4 has no sum(): aggregate() folds the items. valueQuantity/valueInteger are
    # spelled out because engines without a type model do not resolve value.ofType(...).
    if spec.total.rule == "sum":
        summed = [item for item in spec.items if item.summed]
        # Component slicing is closed: when every item counts, every component is one.
        items = "component" if len(summed) == len(spec.items) else _item_filter(summed)
        total = f"{items}.valueInteger.aggregate($this + $total, 0)"
        human = "total = sum of the items when all items are present"
    else:
        summed = spec.items
        items = _item_filter(summed)
        total = "0"
        for level, item in enumerate(spec.items, 1):
            total = f"iif({_item_filter([item])}.valueInteger > {item.min}, {level}, {total})"
        human = "total = highest item level answered positive when all items are present"
    return {
        "key": f"{spec.id}-total",
        "severity": "error",
        "human": f"{spec.name} {human}",
        "expression": f"({items}.count() = {len(summed)} and valueQuantity.exists()) implies "
        f"(valueQuantity.value = {total})",
        "source": spec.profile_url,
    }


def score_profile(spec: InstrumentSpec, m: Mappings) -> dict[str, Any]:
    """Score Observation profile: code pattern, survey category, item slices, total invariant."""
    range_rule = {
        "key": f"{spec.id}-range",
        "severity": "error",
        "human": f"{spec.name} total within {spec.total.min}..{spec.total.max}",
        "expression": f"valueQuantity.exists() implies (valueQuantity.value >= {spec.total.min} "
        f"and valueQuantity.value <= {spec.total.max})",
        "source": spec.profile_url,
    }
    elements = [
        _el("Observation", constraint=[_total_invariant(spec), range_rule]),
        *_study_slice("Observation", 0),
        _el(
            "Observation.category",
            min=1,
            slicing={"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"},
        ),
        # Patterns name system and code only: a display in a pattern would have to match too.
        _el("Observation.category:survey", min=1, max="1", patternCodeableConcept=SURVEY_PATTERN),
        _el("Observation.code", patternCodeableConcept={"coding": [coding(spec.total.code)]}),
        _el("Observation.subject", min=1, type=_ref("Patient")),
        _el("Observation.encounter", type=_ref("Encounter")),
        _el("Observation.effective[x]", min=1, type=[{"code": "dateTime"}]),
        _el(
            "Observation.value[x]",
            type=[{"code": "Quantity"}],
            patternQuantity={"system": UCUM, "code": "{score}"},
        ),
        _el("Observation.derivedFrom", type=_ref("QuestionnaireResponse")),
        _el(
            "Observation.component",
            slicing={"discriminator": [{"type": "pattern", "path": "code"}], "rules": "closed"},
        ),
    ]
    for item in spec.items:
        name = f"item-{item.link_id.replace('.', '-')}"
        elements += [
            _el(f"Observation.component:{name}", min=0, max="1", short=item.text),
            _el(
                f"Observation.component:{name}.code",
                patternCodeableConcept={"coding": [coding(item.code)]},
            ),
            _el(
                f"Observation.component:{name}.value[x]",
                type=[{"code": "integer"}],
                minValueInteger=item.min,
                maxValueInteger=item.max,
            ),
        ]
    return _sd(
        m,
        spec.profile_name,
        "Observation",
        f"{spec.name} score",
        f"One administration of the {spec.title}: total as valueQuantity, one component "
        "per item. Components rather than hasMember keep the total and its items in one "
        "resource, so the total = items invariant is checkable on it.",
        elements,
    )


def administration_profile(m: Mappings) -> dict[str, Any]:
    med = m.medication
    dose_roles = f"{CANONICAL}/ValueSet/dose-role"
    elements = [
        *_study_slice("MedicationAdministration", 0),
        _el(
            "MedicationAdministration.category",
            binding={"strength": "required", "valueSet": dose_roles},
        ),
        _el(
            "MedicationAdministration.medication[x]",
            type=[{"code": "CodeableConcept"}],
            patternCodeableConcept={"coding": [coding(med.code)]},
        ),
        _el("MedicationAdministration.subject", type=_ref("Patient")),
        _el("MedicationAdministration.context", min=1, type=_ref("Encounter")),
        _el("MedicationAdministration.partOf", max="1", type=_ref("MedicationAdministration")),
        _el("MedicationAdministration.dosage", min=1),
        _el(
            "MedicationAdministration.dosage.route",
            min=1,
            patternCodeableConcept={"coding": [coding(med.route)]},
        ),
        _el(
            "MedicationAdministration.dosage.dose",
            min=1,
            patternQuantity={"system": UCUM, "code": med.dose_unit},
        ),
    ]
    return _sd(
        m,
        "mdma-administration",
        "MedicationAdministration",
        "MDMA administration",
        f"One MDMA dose ({med.text}) in a dosing session: initial or supplemental (the "
        "supplemental partOf the initial), mg (UCUM), oral, context the dosing Encounter.",
        elements,
    )


def medication_profile(m: Mappings) -> dict[str, Any]:
    """The study drug: coded by its UNII, and where form and strength are stated, the strength
    of the MDMA ingredient in mg (UCUM). The trial's unit dose and dose form are UNVERIFIED
    (CLINICAL.md 2, 3.2), so neither is fixed here."""
    med = m.medication
    unii = {"coding": [coding(med.code)]}
    elements = [
        _el("Medication.code", min=1, patternCodeableConcept=unii),
        _el(
            "Medication.ingredient.item[x]",
            type=[{"code": "CodeableConcept"}],
            patternCodeableConcept=unii,
        ),
        _el(
            "Medication.ingredient.strength.numerator",
            min=1,
            patternQuantity={"system": UCUM, "code": med.dose_unit},
        ),
    ]
    return _sd(
        m,
        MEDICATION_PROFILE,
        "Medication",
        "MDMA (midomafetamine)",
        f"The study drug {med.text}: code UNII {split_code(med.code)[1]} (FDA substance "
        "registry); form as the pharmacy states it; an ingredient, if stated, is MDMA with its "
        "strength in mg. Sources: " + "; ".join(med.source),
        elements,
    )


def structure_definitions(m: Mappings) -> list[dict[str, Any]]:
    """All project profiles as differential StructureDefinitions."""
    visit_types = f"{CANONICAL}/ValueSet/visit"
    return [
        *(score_profile(spec, m) for spec in m.instruments),
        administration_profile(m),
        medication_profile(m),
        _sd(
            m,
            "trial-patient",
            "Patient",
            "Trial patient",
            "A trial participant on the EHR side: identified, with gender and birth date.",
            [
                _el("Patient.identifier", min=1),
                _el("Patient.gender", min=1),
                _el("Patient.birthDate", min=1),
            ],
        ),
        _sd(
            m,
            "trial-research-subject",
            "ResearchSubject",
            "Trial research subject",
            "Participation in the study; identifier = the study subject id (research pseudonym).",
            [
                _el(
                    "ResearchSubject.identifier",
                    min=1,
                    max="1",
                    patternIdentifier={"system": f"{SID}/study-subject"},
                ),
                _el("ResearchSubject.individual", type=_ref("Patient")),
            ],
        ),
        _sd(
            m,
            "visit-encounter",
            "Encounter",
            "Trial visit",
            "A protocol visit: type from the visit CodeSystem, linked to the ResearchStudy.",
            [
                *_study_slice("Encounter", 1),
                _el(
                    "Encounter.type",
                    min=1,
                    binding={"strength": "required", "valueSet": visit_types},
                ),
                _el("Encounter.subject", min=1, type=_ref("Patient")),
                _el("Encounter.period", min=1),
            ],
        ),
    ]
