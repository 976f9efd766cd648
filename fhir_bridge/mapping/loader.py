"""Loading and cross-checking every file in mappings/ into one immutable `Mappings` object."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import InvalidRequestError, MappingError, MappingSpecError
from fhir_bridge.mapping.spec import (
    SYSTEMS,
    CodeSystemSpec,
    ColumnMapSpec,
    ConceptMapSpec,
    IGSpec,
    InstrumentSpec,
    MedicationSpec,
    ProtocolSpec,
    VisitSpec,
    split_code,
)
from fhir_bridge.views import ViewDefinition

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "mappings"

M = TypeVar("M", bound=BaseModel)


class Mappings:
    """All mapping specs, validated together; the single input of every mapping function."""

    def __init__(
        self,
        *,
        instruments: list[InstrumentSpec],
        code_systems: list[CodeSystemSpec],
        protocol: ProtocolSpec,
        medication: MedicationSpec,
        concept_maps: list[ConceptMapSpec],
        column_maps: list[ColumnMapSpec],
        ig: IGSpec,
    ) -> None:
        self.instruments = tuple(instruments)
        self.code_systems = tuple(code_systems)
        self.protocol = protocol
        self.medication = medication
        self.concept_maps = tuple(concept_maps)
        self.column_maps = {column_map.name: column_map for column_map in column_maps}
        self.ig = ig
        self._by_id = {spec.id: spec for spec in instruments}
        self._by_url = {spec.questionnaire_url: spec for spec in instruments}
        self._by_total = {spec.total_coding: spec for spec in instruments}
        self._cache: dict[str, Any] = {}

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """A value derived from the specs, built once (the specs never change after load)."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def instrument(self, instrument_id: str) -> InstrumentSpec:
        """The instrument spec by id (`madrs`, `sds`, ...); KeyError when unknown."""
        return self._by_id[instrument_id]

    def instrument_for_questionnaire(self, canonical: str) -> InstrumentSpec | None:
        return self._by_url.get(canonical.split("|", 1)[0])

    def instrument_for_total(self, system: str | None, code: str | None) -> InstrumentSpec | None:
        return self._by_total.get((system or "", code or ""))

    def visit(self, code: str) -> VisitSpec | None:
        return self.protocol.visit(code)

    def column_map(self, name: str) -> ColumnMapSpec:
        if name not in self.column_maps:
            known = ", ".join(sorted(self.column_maps))
            raise MappingError(
                f"unknown column map {name!r}: mappings/columns has {known}", expression="--map"
            )
        return self.column_maps[name]

    def conformance_resources(self) -> list[dict[str, Any]]:
        """CodeSystems, ValueSets, Questionnaires, ConceptMaps and profile differentials."""
        from fhir_bridge.mapping import concept_maps, profiles, questionnaires, terminology

        return [
            *terminology.code_systems(self),
            *terminology.value_sets(self),
            *[questionnaires.questionnaire(spec) for spec in self.instruments],
            *[concept_maps.concept_map(spec) for spec in self.concept_maps],
            *profiles.structure_definitions(self),
        ]

    def study_resources(self) -> list[dict[str, Any]]:
        """ResearchStudy, PlanDefinition (visit schedule) and the MDMA Medication."""
        from fhir_bridge.mapping import protocol

        return [
            protocol.research_study(self),
            protocol.plan_definition(self),
            protocol.medication(self),
        ]


def read_json(path: Path) -> Any:
    """A file of mappings/ as parsed JSON; unreadable or malformed: MappingSpecError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MappingSpecError(
            f"{path.name}: not readable JSON: {exc}", expression=str(path)
        ) from exc


def _read(path: Path, model: type[M]) -> M:
    data = read_json(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = [
            Issue(
                "fatal",
                "invalid",
                f"{path.name}: {error['msg']}",
                f"{path}:{'.'.join(str(part) for part in error['loc'])}",
            )
            for error in exc.errors()
        ]
        raise MappingSpecError(issues=issues) from exc


def _read_all(folder: Path, model: type[M]) -> list[M]:
    return [_read(path, model) for path in sorted(folder.glob("*.json"))]


def _fail(path: Path, message: str) -> MappingSpecError:
    return MappingSpecError(f"{path.name}: {message}", expression=str(path))


def _check_links(root: Path, m: Mappings) -> None:
    known = {spec.id for spec in m.instruments}
    for visit in m.protocol.visits:
        for instrument_id in visit.instruments:
            if instrument_id not in known:
                raise _fail(root / "protocol", f"visit {visit.code}: unknown {instrument_id!r}")
    for column_map in m.column_maps.values():
        for column in column_map.instruments:
            if column.instrument not in known:
                raise _fail(root / "columns", f"{column_map.name}: unknown {column.instrument!r}")
    project_codes: dict[str, set[str]] = {SYSTEMS["visit"]: {v.code for v in m.protocol.visits}}
    for spec in m.instruments:
        for ref in [spec.total.code, *(item.code for item in spec.items)]:
            system, code = split_code(ref)
            project_codes.setdefault(system, set()).add(code)
    for concept_map in m.concept_maps:
        for group in concept_map.groups:
            targets = project_codes.get(group.target)
            for element in group.elements:
                if targets is not None and element.target not in targets:
                    raise _fail(
                        root / "conceptmaps", f"{concept_map.id}: unknown target {element.target!r}"
                    )
    urls = {code_system.url for code_system in m.code_systems}
    missing = {SYSTEMS[p] for p in ("assessment", "severity", "visit", "dose-role")} - urls
    if missing:
        raise _fail(root / "codesystems", f"missing code systems {sorted(missing)}")


def _check_views(folder: Path) -> None:
    """Each trial view checked against the SQL on FHIR model and compiled, and carrying what
    the codebook reads (name, title, description, a description per column); an error names
    the file and the element, e.g. `.../scores_long.json:ViewDefinition.select[0].column[1].path`.
    """
    for path in sorted(folder.glob("*.json")):
        data = read_json(path)
        try:
            ViewDefinition.parse(data)
        except InvalidRequestError as exc:
            issues = [
                Issue("fatal", issue.code, f"{path.name}: {issue.diagnostics}", f"{path}:{at}")
                for issue in exc.issues
                for at in [issue.expression or "ViewDefinition"]
            ]
            raise MappingSpecError(issues=issues) from exc
        needed = [f"ViewDefinition.{key}" for key in ("name", "title", "description")]
        needed = [at for at in needed if not data.get(at.split(".")[1])]
        needed += _undescribed(data.get("select", []), "ViewDefinition.select")
        if needed:
            raise MappingSpecError(
                f"{path.name}: {needed[0]}: required by the codebook",
                expression=f"{path}:{needed[0]}",
            )


def _undescribed(selects: list[dict[str, Any]], location: str) -> list[str]:
    """The columns without a description, as elements (the view is already checked)."""
    missing = []
    for n, select in enumerate(selects):
        at = f"{location}[{n}]"
        for k, column in enumerate(select.get("column", [])):
            if not column.get("description"):
                missing.append(f"{at}.column[{k}].description")
        missing += _undescribed(select.get("select", []), f"{at}.select")
        missing += _undescribed(select.get("unionAll", []), f"{at}.unionAll")
    return missing


def load_mappings(path: Path | None = None) -> Mappings:
    """Read and validate every file under `path` (default: the repository's mappings/).

    A malformed or inconsistent file raises MappingSpecError naming the file.
    """
    root = path or DEFAULT_PATH
    protocols = _read_all(root / "protocol", ProtocolSpec)
    medications = _read_all(root / "medications", MedicationSpec)
    if len(protocols) != 1 or len(medications) != 1:
        raise _fail(root, "expected exactly one protocol and one medication file")
    loaders: dict[str, Callable[[], Any]] = {
        "instruments": lambda: _read_all(root / "instruments", InstrumentSpec),
        "code_systems": lambda: _read_all(root / "codesystems", CodeSystemSpec),
        "concept_maps": lambda: _read_all(root / "conceptmaps", ConceptMapSpec),
        "column_maps": lambda: _read_all(root / "columns", ColumnMapSpec),
    }
    m = Mappings(
        protocol=protocols[0],
        medication=medications[0],
        ig=_read(root / "ig.json", IGSpec),
        **{name: load() for name, load in loaders.items()},
    )
    _check_links(root, m)
    _check_views(root / "views")
    return m
