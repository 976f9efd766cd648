"""SQL on FHIR v2 views: ViewDefinitions checked, compiled and run over resources as rows.

    view = ViewDefinition.parse(view_json)        # InvalidRequestError names the element
    for row in run(view, resources):              # dicts in column order, streamed
        ...
    run_tuples(view, resources)                   # the same rows as tuples, for tables

Modules: definition (the checked, compiled model), columns (cells and their types), paths
(the FHIRPath dialect of views), keys (getResourceKey, getReferenceKey), boundaries
(lowBoundary, highBoundary), fallback (fhirpathpy for the rest), runner (rows).
https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html
"""

from fhir_bridge.views.definition import ViewDefinition
from fhir_bridge.views.runner import Row, as_dicts, run, run_tuples

__all__ = ["Row", "ViewDefinition", "as_dicts", "run", "run_tuples"]
