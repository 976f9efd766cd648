"""Compiles snapshot elements into per-structure lookup tables: JSON name -> Field.

One Struct per resource type, datatype and backbone element (keyed by type name or element
path, e.g. "Observation.component"); the engine walks a resource dict once against these.
https://hl7.org/fhir/R4/elementdefinition.html
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_bridge.validation.definitions import PRIMITIVE_TYPES, load_definitions
from fhir_bridge.validation.primitives import Checker, build_checkers

PRIMITIVE, COMPLEX, RESOURCE = 0, 1, 2


@dataclass(slots=True)
class Field:
    """One JSON property of a structure (a choice element yields one Field per type)."""

    name: str
    element: str
    kind: int
    type_code: str
    is_array: bool
    min: int
    max: int | None
    struct: str | None = None
    check: Checker | None = None
    choice: str | None = None
    targets: frozenset[str] | None = None
    binding: tuple[str, str] | None = None


@dataclass(slots=True)
class Constraint:
    """A FHIRPath invariant of an element, with its spec key, severity and text."""

    key: str
    severity: str
    human: str
    expression: str
    field: str | None = None


@dataclass(slots=True)
class Struct:
    """The compiled shape of one type or backbone element."""

    key: str
    fields: dict[str, Field] = field(default_factory=dict)
    required: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    is_resource: bool = False
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Filled by the engine: per-field handlers, bound invariants, all choice JSON names.
    handlers: dict[str, Any] = field(default_factory=dict)
    walk: Any = None
    rules: list[Any] = field(default_factory=list)
    choice_keys: frozenset[str] = frozenset()
    # Per single primitive field: the string and integer values already found valid there.
    known: dict[str, set[str | int]] = field(default_factory=dict)


def parse_max(value: str) -> int | None:
    return None if value == "*" else int(value)


def choice_name(base: str, type_code: str) -> str:
    return base + type_code[0].upper() + type_code[1:]


class Compiler:
    """Turns vendored (or profile) snapshot elements into Structs."""

    def __init__(self) -> None:
        data = load_definitions()
        self.checkers = build_checkers()
        self.resource_types: frozenset[str] = frozenset(data["resourceTypes"])
        self.structures: dict[str, Any] = data["structures"]
        self.structs: dict[str, Struct] = {}
        for name, structure in self.structures.items():
            if structure["kind"] != "primitive-type":
                self.compile_elements(name, structure["elements"], structure["kind"] == "resource")

    def compile_elements(
        self, root: str, elements: list[dict[str, Any]], is_resource: bool
    ) -> dict[str, Struct]:
        """Compile one snapshot's elements into Structs keyed by type name / element path."""
        parents = {e["p"].rsplit(".", 1)[0] for e in elements if "." in e["p"]}
        structs: dict[str, Struct] = {}
        for e in elements:
            path: str = e["p"]
            if "." not in path:
                struct = structs.setdefault(path, Struct(path, is_resource=is_resource))
                struct.constraints.extend(Constraint(*c) for c in e.get("c", []))
                continue
            parent, name = path.rsplit(".", 1)
            struct = structs.setdefault(parent, Struct(parent))
            self._add_element(struct, e, name, has_children=path in parents)
        self.structs.update(structs)
        return structs

    def _add_element(
        self, struct: Struct, e: dict[str, Any], name: str, has_children: bool
    ) -> None:
        path = e["p"]
        max_ = parse_max(e["x"])
        is_array = e.get("bx", e["x"]) != "1"
        binding = (str(e["b"][0]), str(e["b"][1])) if "b" in e else None
        for c in e.get("c", []):
            key, severity, human, expression = c
            field_name = name.removesuffix("[x]")
            struct.constraints.append(Constraint(key, severity, human, expression, field_name))
        if "r" in e:
            f = Field(name, path, COMPLEX, "BackboneElement", is_array, e["n"], max_, struct=e["r"])
            self._register(struct, f, e["n"])
            return
        types = e.get("t", [])
        if name.endswith("[x]"):
            base = name[:-3]
            names = []
            for t in types:
                f = self._field(choice_name(base, t[0]), path, t, is_array, e, has_children)
                f.choice = base
                f.binding = binding
                struct.fields[f.name] = f
                names.append(f.name)
            struct.choices[base] = tuple(names)
            if e["n"] > 0:
                struct.required.append((base, tuple(names) + tuple("_" + n for n in names)))
            return
        t = types[0] if types else ["BackboneElement"]
        f = self._field(name, path, t, is_array, e, has_children)
        f.binding = binding
        self._register(struct, f, e["n"])

    def _register(self, struct: Struct, f: Field, min_: int) -> None:
        struct.fields[f.name] = f
        if min_ > 0:
            struct.required.append((f.name, (f.name, "_" + f.name)))

    def _field(
        self, name: str, path: str, t: list[Any], is_array: bool, e: dict[str, Any], nested: bool
    ) -> Field:
        code: str = t[0]
        max_ = parse_max(e["x"])
        if nested:
            return Field(name, path, COMPLEX, code, is_array, e["n"], max_, struct=path)
        if code in PRIMITIVE_TYPES:
            return Field(
                name, path, PRIMITIVE, code, is_array, e["n"], max_, check=self.checkers[code]
            )
        if code == "Resource" or code in self.resource_types:
            return Field(name, path, RESOURCE, code, is_array, e["n"], max_)
        targets = None
        if code == "Reference" and len(t) > 1:
            targets = frozenset(t[1])
        # A core datatype profile (SimpleQuantity) has a Struct of its own, same JSON shape.
        struct = t[2] if len(t) > 2 else code
        return Field(
            name, path, COMPLEX, code, is_array, e["n"], max_, struct=struct, targets=targets
        )
