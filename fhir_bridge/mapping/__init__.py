"""Trial concepts to FHIR and back, driven by the files in mappings/."""

from fhir_bridge.mapping.clinical import check_clinical, interpret, may_interpret
from fhir_bridge.mapping.columns import bundle_to_table, table_to_bundle
from fhir_bridge.mapping.concept_maps import may_translate, translate_codes
from fhir_bridge.mapping.ig_package import build_ig_package
from fhir_bridge.mapping.loader import Mappings, load_mappings
from fhir_bridge.mapping.scoring import score_response

__all__ = [
    "Mappings",
    "build_ig_package",
    "bundle_to_table",
    "check_clinical",
    "interpret",
    "load_mappings",
    "may_interpret",
    "may_translate",
    "score_response",
    "table_to_bundle",
    "translate_codes",
]
