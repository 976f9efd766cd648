"""Trial concepts to FHIR and back, driven by the files in mappings/."""

from fhir_bridge.mapping.clinical import check_clinical
from fhir_bridge.mapping.columns import read_table
from fhir_bridge.mapping.concept_maps import may_translate, translate_codes
from fhir_bridge.mapping.ig_package import build_ig_package
from fhir_bridge.mapping.loader import Mappings, load_mappings
from fhir_bridge.mapping.scoring import score_response
from fhir_bridge.mapping.table_export import bundle_to_table

__all__ = [
    "Mappings",
    "build_ig_package",
    "bundle_to_table",
    "check_clinical",
    "load_mappings",
    "read_table",
    "may_translate",
    "score_response",
    "translate_codes",
]
