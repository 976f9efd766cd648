"""The Patient compartment of the supported resource types: which references put a resource
in a patient's record (Bulk Data Patient and Group exports, the research view's participant).

From the R4 CompartmentDefinition `patient` (4.0.1, http://hl7.org/fhir/CompartmentDefinition/patient,
https://hl7.org/fhir/R4/compartmentdefinition-patient.html): its `resource[].param` entries for
the types this server stores. A type absent here is never in the compartment.
"""

from __future__ import annotations

from functools import cache

from fhir_bridge.domain.search_parameters import narrowed

PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = {
    "AdverseEvent": ("subject",),
    "AuditEvent": ("patient",),
    "Consent": ("patient",),
    "Encounter": ("patient",),
    "Group": ("member",),
    "MedicationAdministration": ("patient", "performer", "subject"),
    "Observation": ("subject", "performer"),
    "Patient": ("link",),  # and the Patient itself
    "Procedure": ("patient", "performer"),
    "Provenance": ("patient",),
    "QuestionnaireResponse": ("subject", "author"),
    "ResearchSubject": ("individual",),
}


@cache
def patient_reference_params(resource_type: str) -> tuple[str, ...]:
    """The search parameters whose Patient references place a resource of the type in that
    patient's compartment, with the base parameter of each narrowed one (Encounter `patient`
    is `subject` narrowed to Patient, and its Patient references are indexed as `subject`)."""
    params = list(PATIENT_COMPARTMENT.get(resource_type, ()))
    for code in tuple(params):
        found = narrowed(resource_type, code)
        if found is not None and found[0] not in params:
            params.append(found[0])
    return tuple(params)
