"""ConceptMaps from hospital local codes to project codes, and their application on ingest."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from fhir_bridge.domain import fhir_json
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


def translation_table(m: Mappings) -> dict[tuple[str, str], tuple[str, str, str | None]]:
    """(source system, code) → (target system, code, display) for equivalent mappings only."""

    def build() -> dict[tuple[str, str], tuple[str, str, str | None]]:
        from fhir_bridge.mapping.terminology import concept_display

        table = {}
        for spec in m.concept_maps:
            for group in spec.groups:
                for element in group.elements:
                    if element.equivalence in _TRANSLATABLE:
                        display = concept_display(m, group.target, element.target)
                        table[(group.source, element.code)] = (
                            group.target,
                            element.target,
                            display,
                        )
        return table

    return m.cached("translation_table", build)  # type: ignore[no-any-return]


Table = dict[tuple[str, str], tuple[str, str, str | None]]


def _mapped(node: Any, sources: set[str]) -> bool:
    if isinstance(node, list):
        return any(_mapped(child, sources) for child in node)
    if isinstance(node, dict):
        system = node.get("system")
        if isinstance(system, str) and system in sources:
            return True
        return any(_mapped(child, sources) for child in node.values())
    return False


def _translate(node: Any, table: Table) -> None:
    if isinstance(node, list):
        for child in node:
            _translate(child, table)
        return
    if not isinstance(node, dict):
        return
    codings = node.get("coding")
    if isinstance(codings, list):
        # Translation runs before validation: codings of any shape pass through untouched.
        keys = [_coding_key(c) for c in codings]
        present = {k for k in keys if k is not None}
        for k in keys:
            target = table.get(k) if k is not None else None
            if target and target[:2] not in present:
                added = {"system": target[0], "code": target[1]}
                if target[2]:
                    added["display"] = target[2]
                codings.append(added)
                present.add(target[:2])
    for key, child in node.items():
        if key != "coding":
            _translate(child, table)


def _coding_key(coding: Any) -> tuple[str, str] | None:
    if not isinstance(coding, dict):
        return None
    system, code = coding.get("system", ""), coding.get("code", "")
    return (system, code) if isinstance(system, str) and isinstance(code, str) else None


def _source_systems(m: Mappings) -> list[bytes]:
    """The source systems of the translation table, UTF-8 encoded."""
    table = translation_table(m)
    return m.cached(  # type: ignore[no-any-return]
        "translation_source_bytes", lambda: sorted({system.encode() for system, _ in table})
    )


def may_translate(raw: bytes, m: Mappings) -> bool:
    """Whether a resource in the JSON text `raw` (a request body) may hold a coding that
    translate_codes translates. No when no source system occurs in `raw` and `raw` has no
    backslash: without escapes, every string in it is spelled as orjson spells it, so a system
    absent from `raw` is absent from each of its resources' serialisations too."""
    return b"\\" in raw or any(system in raw for system in _source_systems(m))


def translate_codes(resource: dict[str, Any], m: Mappings) -> dict[str, Any]:
    """The resource with every CodeableConcept holding a mapped local coding also carrying the
    project coding; the original coding is kept. A resource with no coding from a mapped
    system is returned as is (no copy); otherwise a translated copy is returned.

    https://hl7.org/fhir/R4/conceptmap-operation-translate.html
    """
    table = translation_table(m)
    # a byte search rules out most resources far faster than walking them
    blob = fhir_json.dumps(resource)
    if not any(system in blob for system in _source_systems(m)):
        return resource
    sources = m.cached("translation_sources", lambda: {system for system, _ in table})
    if not _mapped(resource, sources):
        return resource
    result = copy.deepcopy(resource)
    _translate(result, table)
    return result
