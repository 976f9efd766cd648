"""ConceptMaps from hospital local codes to project codes, and their application on ingest."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from fhir_bridge.mapping.spec import ConceptMapSpec

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

_TRANSLATABLE = {"equivalent", "equal"}


def concept_map(spec: ConceptMapSpec) -> dict[str, Any]:
    """The ConceptMap resource of a concept map file. https://hl7.org/fhir/R4/conceptmap.html"""
    return {
        "resourceType": "ConceptMap",
        "id": spec.id,
        "url": spec.url,
        "version": "1",
        "name": spec.name,
        "title": spec.title,
        "status": "active",
        "experimental": True,
        "description": f"{spec.description}\n\nSource: {spec.source}",
        "group": [
            {
                "source": group.source,
                "target": group.target,
                "element": [
                    {
                        "code": element.code,
                        "display": element.display,
                        "target": [{"code": element.target, "equivalence": element.equivalence}],
                    }
                    for element in group.elements
                ],
            }
            for group in spec.groups
        ],
    }


def translation_table(m: Mappings) -> dict[tuple[str, str], tuple[str, str]]:
    """(source system, code) → (target system, code) for equivalent mappings only."""
    table: dict[tuple[str, str], tuple[str, str]] = {}
    for spec in m.concept_maps:
        for group in spec.groups:
            for element in group.elements:
                if element.equivalence in _TRANSLATABLE:
                    table[(group.source, element.code)] = (group.target, element.target)
    return table


def _translate(node: Any, table: dict[tuple[str, str], tuple[str, str]], m: Mappings) -> None:
    from fhir_bridge.mapping.terminology import concept_display

    if isinstance(node, list):
        for child in node:
            _translate(child, table, m)
        return
    if not isinstance(node, dict):
        return
    codings = node.get("coding")
    if isinstance(codings, list):
        present = {(c.get("system"), c.get("code")) for c in codings if isinstance(c, dict)}
        for c in list(codings):
            if not isinstance(c, dict):
                continue
            target = table.get((c.get("system", ""), c.get("code", "")))
            if target and target not in present:
                added = {"system": target[0], "code": target[1]}
                display = concept_display(m, *target)
                if display:
                    added["display"] = display
                codings.append(added)
                present.add(target)
    for key, child in node.items():
        if key != "coding":
            _translate(child, table, m)


def translate_codes(resource: dict[str, Any], m: Mappings) -> dict[str, Any]:
    """A copy of the resource where every CodeableConcept with a mapped local coding also
    carries the project coding; the original coding is kept.

    https://hl7.org/fhir/R4/conceptmap-operation-translate.html
    """
    result = copy.deepcopy(resource)
    _translate(result, translation_table(m), m)
    return result
