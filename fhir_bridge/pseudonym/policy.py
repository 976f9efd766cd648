"""The research policy in mappings/research-policy.json as one validated `ResearchPolicy`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, cast

from fhir_bridge.errors import MappingSpecError
from fhir_bridge.mapping.loader import read_json
from fhir_bridge.validation.definitions import load_definitions, resource_types

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "mappings" / "research-policy.json"

DateMethod = Literal["shift", "study-day"]
BirthDate = Literal["year", "remove"]
Withdrawn = Literal["until-withdrawal", "exclude"]

_FIELDS = frozenset(
    {
        "id",
        "title",
        "source",
        "rationale",
        "remove_types",
        "remove_elements",
        "keep_identifier_systems",
        "exclude_resource_types",
        "date_method",
        "max_shift_days",
        "study_day_epoch",
        "birth_date",
        "max_age",
        "withdrawn",
        "consent",
    }
)


@dataclass(frozen=True)
class ConsentRules:
    """Which Consents speak for research use, and whether one must exist."""

    research_codings: frozenset[tuple[str, str]]  # (system, code) of Consent.scope or .category
    require_consent: bool


@dataclass(frozen=True)
class ResearchPolicy:
    """What a research consumer sees; hashable, so derived walk plans are built once per policy."""

    remove_types: frozenset[str]  # datatype names removed wherever they occur
    remove_elements: frozenset[str]  # element paths with JSON names: "Observation.valueString"
    keep_identifier_systems: frozenset[str]
    exclude_resource_types: frozenset[str]
    date_method: DateMethod
    max_shift_days: int
    study_day_epoch: date
    birth_date: BirthDate
    max_age: int
    withdrawn: Withdrawn
    consent: ConsentRules


class _Reader:
    """Field access on the raw file that names the field in every error."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, field: str, message: str) -> MappingSpecError:
        return MappingSpecError(
            f"{self.path.name}: {field}: {message}", expression=f"{self.path}:{field}"
        )

    def get(self, field: str, kind: type | tuple[type, ...], parent: str = "") -> Any:
        source = self.data if not parent else self.data.get(parent, {})
        name = f"{parent}.{field}" if parent else field
        if field not in source:
            raise self.fail(name, "missing")
        value = source[field]
        # bool is an int in Python; a flag written where a number belongs is still an error
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise self.fail(name, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def strings(self, field: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(field, "expected a list of non-empty strings")
        return cast(list[str], value)

    def choice(self, field: str, allowed: tuple[str, ...]) -> str:
        value: str = self.get(field, str)
        if value not in allowed:
            raise self.fail(field, f"{value!r} is not one of {', '.join(allowed)}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "an integer",
        bool: "true/false",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _element_paths(type_name: str) -> frozenset[str]:
    """Every element path of a vendored type relative to it, choice elements by JSON name."""
    paths: set[str] = set()
    for element in load_definitions()["structures"][type_name]["elements"]:
        path: str = element["p"]
        if "." not in path:
            continue
        relative = path.split(".", 1)[1]
        if relative.endswith("[x]"):
            base = relative[:-3]
            paths.update(base + t[0][0].upper() + t[0][1:] for t in element.get("t", []))
        else:
            paths.add(relative)
    return frozenset(paths)


def _remove_elements(reader: _Reader) -> frozenset[str]:
    structures = load_definitions()["structures"]
    paths: set[str] = set()
    for type_name, relatives in reader.get("remove_elements", dict).items():
        field = f"remove_elements.{type_name}"
        if type_name not in structures:
            raise reader.fail(field, f"{type_name!r} is not a vendored R4 type")
        known = _element_paths(type_name)
        for relative in reader.strings(field, relatives):
            if relative not in known:
                raise reader.fail(field, f"{type_name} has no element {relative!r}")
            paths.add(f"{type_name}.{relative}")
    return frozenset(paths)


def _remove_types(reader: _Reader) -> frozenset[str]:
    structures = load_definitions()["structures"]
    names = reader.strings("remove_types", reader.get("remove_types", list))
    for name in names:
        if structures.get(name, {}).get("kind") != "complex-type":
            raise reader.fail("remove_types", f"{name!r} is not an R4 complex datatype")
    return frozenset(names)


def _consent(reader: _Reader) -> ConsentRules:
    reader.get("consent", dict)
    unknown = set(reader.data["consent"]) - {"research_codings", "require_consent"}
    if unknown:
        raise reader.fail("consent", f"unknown fields {sorted(unknown)}")
    codings: set[tuple[str, str]] = set()
    for coding in reader.get("research_codings", list, parent="consent"):
        system, code = (
            coding.get(k) if isinstance(coding, dict) else None for k in ("system", "code")
        )
        if not isinstance(system, str) or not isinstance(code, str) or not system or not code:
            raise reader.fail("consent.research_codings", "each entry needs a system and a code")
        codings.add((system, code))
    if not codings:
        raise reader.fail("consent.research_codings", "at least one coding is needed")
    return ConsentRules(frozenset(codings), reader.get("require_consent", bool, parent="consent"))


def _read(path: Path) -> ResearchPolicy:
    data = read_json(path)
    if not isinstance(data, dict):
        raise MappingSpecError(f"{path.name}: expected a JSON object", expression=str(path))
    reader = _Reader(path, data)
    unknown = set(data) - _FIELDS
    if unknown:
        raise reader.fail(sorted(unknown)[0], "unknown field")
    if not reader.get("source", (str, list)):
        raise reader.fail("source", "cite at least one source")
    rationale = reader.get("rationale", dict)
    for field in ("remove_types", "remove_elements", "keep_identifier_systems", "date_method"):
        if not isinstance(rationale.get(field), str):
            raise reader.fail(f"rationale.{field}", "missing")
    excluded = reader.strings("exclude_resource_types", reader.get("exclude_resource_types", list))
    unknown_types = sorted(set(excluded) - resource_types())
    if unknown_types:
        raise reader.fail("exclude_resource_types", f"unknown resource types {unknown_types}")
    max_shift_days: int = reader.get("max_shift_days", int)
    if max_shift_days < 1:
        raise reader.fail("max_shift_days", "must be at least 1")
    try:
        epoch = date.fromisoformat(reader.get("study_day_epoch", str))
    except ValueError as exc:
        raise reader.fail("study_day_epoch", "expected a date YYYY-MM-DD") from exc
    max_age: int = reader.get("max_age", int)
    if max_age < 1:
        raise reader.fail("max_age", "must be at least 1")
    return ResearchPolicy(
        remove_types=_remove_types(reader),
        remove_elements=_remove_elements(reader),
        keep_identifier_systems=frozenset(
            reader.strings("keep_identifier_systems", reader.get("keep_identifier_systems", list))
        ),
        exclude_resource_types=frozenset(excluded),
        date_method=cast(DateMethod, reader.choice("date_method", ("shift", "study-day"))),
        max_shift_days=max_shift_days,
        study_day_epoch=epoch,
        birth_date=cast(BirthDate, reader.choice("birth_date", ("year", "remove"))),
        max_age=max_age,
        withdrawn=cast(Withdrawn, reader.choice("withdrawn", ("until-withdrawal", "exclude"))),
        consent=_consent(reader),
    )


def load_policy(path: Path | None = None) -> ResearchPolicy:
    """Read and validate the research policy (default: the repository's
    mappings/research-policy.json); a malformed file raises MappingSpecError naming the field.

    Security labels applied under it: https://hl7.org/fhir/R4/security-labels.html
    """
    return _read(path or DEFAULT_PATH)
