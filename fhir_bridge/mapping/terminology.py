"""The project's CodeSystems and ValueSets, built from the code system files and the specs they
draw their concepts from (instruments, severity bands, the visit schedule)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_bridge.mapping.spec import CANONICAL, CodeSystemSpec, ConceptSpec, split_code

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings


def _concepts(spec: CodeSystemSpec, m: Mappings) -> list[ConceptSpec]:
    concepts = list(spec.concepts)
    if spec.concepts_from == "instruments":
        for instrument in m.instruments:
            panel = [(instrument.panel_code, instrument.title)] if instrument.panel_code else []
            for ref, display in [
                *panel,
                (instrument.total.code, instrument.total.display),
                *(
                    (item.code, f"{instrument.name} item {item.link_id}: {item.text}")
                    for item in instrument.items
                ),
            ]:
                system, code = split_code(ref)
                if system == spec.url:
                    concepts.append(ConceptSpec(code=code, display=display))
    elif spec.concepts_from == "bands":
        for instrument in m.instruments:
            for band in instrument.bands:
                definition = f"{instrument.name} total {band.min}-{band.max}"
                concepts.append(
                    ConceptSpec(code=band.code, display=band.display, definition=definition)
                )
            if (rule := instrument.item_rule) is not None:
                concepts.append(ConceptSpec(code=rule.code, display=rule.display))
                concepts.append(
                    ConceptSpec(code=rule.otherwise_code, display=rule.otherwise_display)
                )
    elif spec.concepts_from == "protocol":
        for visit in m.protocol.visits:
            concepts.append(
                ConceptSpec(
                    code=visit.code,
                    display=visit.display,
                    definition=f"Protocol visit {visit.visit} ({visit.kind})",
                )
            )
    return concepts


def code_system(spec: CodeSystemSpec, m: Mappings) -> dict[str, Any]:
    """A complete CodeSystem resource. https://hl7.org/fhir/R4/codesystem.html"""
    concepts = _concepts(spec, m)
    return {
        "resourceType": "CodeSystem",
        "id": spec.id,
        "url": spec.url,
        "version": m.ig.version,
        "name": spec.name,
        "title": spec.title,
        "status": "active",
        "experimental": False,
        "publisher": m.ig.publisher,
        "description": f"{spec.description}\n\nSource: {spec.source}",
        "caseSensitive": True,
        "valueSet": f"{CANONICAL}/ValueSet/{spec.id}",
        "content": "complete",
        "count": len(concepts),
        "concept": [
            {k: v for k, v in concept.model_dump().items() if v is not None} for concept in concepts
        ],
    }


def code_systems(m: Mappings) -> list[dict[str, Any]]:
    return [code_system(spec, m) for spec in m.code_systems]


def value_sets(m: Mappings) -> list[dict[str, Any]]:
    """One ValueSet with all codes of each project CodeSystem (e.g. the visit types)."""
    return [
        {
            "resourceType": "ValueSet",
            "id": spec.id,
            "url": f"{CANONICAL}/ValueSet/{spec.id}",
            "version": m.ig.version,
            "name": f"{spec.name}Codes",
            "title": f"All {spec.title}",
            "status": "active",
            "experimental": False,
            "publisher": m.ig.publisher,
            "description": f"All codes of {spec.url}.",
            "compose": {"include": [{"system": spec.url}]},
        }
        for spec in m.code_systems
    ]


def concept_display(m: Mappings, system: str, code: str) -> str | None:
    """Display of a project code, or None when the code is not defined."""
    for spec in m.code_systems:
        if spec.url == system:
            return next((c.display for c in _concepts(spec, m) if c.code == code), None)
    return None
