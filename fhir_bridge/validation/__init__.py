"""Definition-driven FHIR R4 validation: `get_validator().validate(resource) -> list[Issue]`.

    from fhir_bridge.validation import get_validator
    validator = get_validator()                  # compiled once per process (~0.3 s)
    validator.add_profiles(resources)            # StructureDefinitions (+ CodeSystems, ValueSets)
    issues = validator.validate(resource, profiles=[...])
    published = validator.snapshot(differential_sd)

Modules: definitions (vendored R4 data), primitives, compiler (snapshot -> lookup tables),
engine (the one-pass walk), references, terminology, invariants and fhirpath, fhirpath_functions,
fhirpath_shortcuts (constraints), snapshot, profiles, conformance and slicing (profile
enforcement), validator (the facade).
https://hl7.org/fhir/R4/validation.html
"""

from fhir_bridge.validation.validator import Validator, get_validator

__all__ = ["Validator", "get_validator"]
