"""Regenerate fhir_bridge/validation/data/r4-definitions.json.gz from the official R4 package.

The official packages are CC0. `hl7.fhir.r4.core@4.0.1` is the canonical source; the
`hl7.fhir.r4.examples@4.0.1` package carries the same StructureDefinitions, ValueSets and
CodeSystems (the spec's own conformance resources are examples of those types), so either works:

    npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python tools/vendor_definitions.py package/

Only what the supported resource types need is kept: their snapshots and those of every type
they reach, core extension value types, expansions of the value sets bound to those elements,
and the regex of each primitive type.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_bridge.domain.fhir import SUPPORTED_TYPES  # noqa: E402

EXTRA_TYPES = ("Bundle", "Parameters", "OperationOutcome", "CapabilityStatement")
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
# Core datatype profiles used by core resources' elements (SimpleQuantity: no comparator).
DATATYPE_PROFILES = (SD_PREFIX + "SimpleQuantity",)
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}
DATA = Path(__file__).resolve().parents[1] / "fhir_bridge/validation/data"
OUTPUT = DATA / "r4-definitions.json.gz"
SNAPSHOTS = DATA / "r4-snapshots.json.gz"
# Publishing-only parts of ElementDefinition that snapshots of project profiles need not repeat.
DROPPED_KEYS = ("mapping", "example", "alias", "requirements")


def load_package(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Read the conformance resources of an unpacked FHIR npm package, by resourceType."""
    found: dict[str, list[dict[str, Any]]] = {
        "StructureDefinition": [],
        "ValueSet": [],
        "CodeSystem": [],
    }
    for path in sorted(folder.glob("*.json")):
        prefix = path.name.split("-", 1)[0]
        if prefix not in found:
            continue
        resource = json.loads(path.read_text(encoding="utf-8"))
        if resource.get("resourceType") in found:
            found[resource["resourceType"]].append(resource)
    return found


def type_code(t: dict[str, Any]) -> str:
    code: str = t["code"]
    if code in SYSTEM_TYPES:
        for ext in t.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext["valueUrl"])
        return SYSTEM_TYPES[code]
    return code


def compact_element(e: dict[str, Any]) -> dict[str, Any]:
    """Keep the parts of an ElementDefinition the validator and snapshot generator use."""
    out: dict[str, Any] = {"p": e["path"], "n": e.get("min", 0), "x": e.get("max", "*")}
    base_max = e.get("base", {}).get("max", out["x"])
    if base_max != out["x"]:
        out["bx"] = base_max
    if "contentReference" in e:
        out["r"] = e["contentReference"].lstrip("#")
    types = []
    for t in e.get("type", []):
        entry: list[Any] = [type_code(t)]
        targets = [p.rsplit("/", 1)[-1] for p in t.get("targetProfile", [])]
        profiles = [p.rsplit("/", 1)[-1] for p in t.get("profile", []) if p in DATATYPE_PROFILES]
        if targets or profiles:
            entry.append(targets)
        if profiles:
            entry.append(profiles[0])
        types.append(entry)
    if types:
        out["t"] = types
    binding = e.get("binding")
    if binding and binding.get("valueSet"):
        out["b"] = [binding["strength"], binding["valueSet"].split("|")[0]]
    constraints = [
        [c["key"], c.get("severity", "error"), c.get("human", ""), c.get("expression", "")]
        for c in e.get("constraint", [])
        if c["key"] != "ele-1" and c.get("expression")
    ]
    if constraints:
        out["c"] = constraints
    return out


def element_types(sd: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for e in sd["snapshot"]["element"]:
        for t in e.get("type", []):
            code = type_code(t)
            names.add(code)
            for p in t.get("profile", []):
                names.add(p.rsplit("/", 1)[-1])
    return names


def select_structures(sds: dict[str, dict[str, Any]]) -> list[str]:
    """The supported types plus the closure of every type their elements use."""
    wanted = list(SUPPORTED_TYPES) + list(EXTRA_TYPES) + ["Resource", "DomainResource"]
    seen: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in seen or name not in sds:
            continue
        seen.add(name)
        sd = sds[name]
        wanted.extend(element_types(sd))
        if sd.get("baseDefinition"):
            wanted.append(sd["baseDefinition"].rsplit("/", 1)[-1])
    # Extension.value[x] and Parameters.value[x] allow every datatype.
    for name, sd in sds.items():
        if sd["kind"] in ("primitive-type", "complex-type") and sd.get("derivation") in (
            "specialization",
            None,
        ):
            seen.add(name)
    return sorted(seen)


def codes_of(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out.extend(codes_of(c.get("concept", [])))
    return out


def expand(
    url: str,
    valuesets: dict[str, dict[str, Any]],
    codesystems: dict[str, dict[str, Any]],
    depth: int = 0,
) -> dict[str, list[str]] | None:
    """Expand a value set into {system: codes}; None when it is not enumerable here."""
    vs = valuesets.get(url)
    if vs is None or depth > 5:
        return None
    compose = vs.get("compose")
    if not compose:
        return None
    result: dict[str, set[str]] = {}
    for include in compose.get("include", []):
        if include.get("filter"):
            return None
        part: dict[str, set[str]] = {}
        system = include.get("system")
        if system and include.get("concept"):
            part[system] = {c["code"] for c in include["concept"]}
        elif system:
            cs = codesystems.get(system)
            if cs is None or cs.get("content") != "complete":
                return None
            part[system] = set(codes_of(cs.get("concept", [])))
        for imported in include.get("valueSet", []):
            sub = expand(imported.split("|")[0], valuesets, codesystems, depth + 1)
            if sub is None:
                return None
            for s, codes in sub.items():
                part.setdefault(s, set()).update(codes)
        for s, codes in part.items():
            result.setdefault(s, set()).update(codes)
    for exclude in compose.get("exclude", []):
        system = exclude.get("system")
        if system in result and exclude.get("concept"):
            result[system] -= {c["code"] for c in exclude["concept"]}
    return {s: sorted(codes) for s, codes in sorted(result.items())}


def extension_summary(sd: dict[str, Any]) -> dict[str, Any]:
    """Allowed value types of a core extension (empty list: complex, no value[x])."""
    types: list[str] = []
    for e in sd["snapshot"]["element"]:
        if e["id"] == "Extension.value[x]" and e.get("max") != "0":
            types = [type_code(t) for t in e.get("type", [])]
    return {"types": types}


def build(folder: Path) -> dict[str, Any]:
    package = load_package(folder)
    base_sds: dict[str, dict[str, Any]] = {}
    extensions: dict[str, Any] = {}
    resource_types: list[str] = []
    for sd in package["StructureDefinition"]:
        if "snapshot" not in sd:
            continue
        if sd.get("derivation") == "constraint" and sd.get("type") == "Extension":
            extensions[sd["url"]] = extension_summary(sd)
        elif sd.get("derivation") in ("specialization", None) and sd["kind"] != "logical":
            if sd["url"] == SD_PREFIX + sd["id"]:
                base_sds[sd["id"]] = sd
                if sd["kind"] == "resource":
                    resource_types.append(sd["id"])
    names = select_structures(base_sds)
    structures: dict[str, Any] = {}
    for sd in package["StructureDefinition"]:
        if sd["url"] in DATATYPE_PROFILES:
            # Stored as a type of its own: paths renamed so it does not replace its base.
            elements = []
            for e in sd["snapshot"]["element"]:
                renamed = dict(e, path=sd["id"] + e["path"][len(sd["type"]) :])
                elements.append(compact_element(renamed))
            structures[sd["id"]] = {
                "kind": "complex-type",
                "base": sd["type"],
                "abstract": False,
                "elements": elements,
            }
    regexes: dict[str, str] = {}
    bound: set[str] = set()
    for name in names:
        sd = base_sds[name]
        elements = [compact_element(e) for e in sd["snapshot"]["element"]]
        for e in elements:
            if "b" in e:
                bound.add(e["b"][1])
        structures[name] = {
            "kind": sd["kind"],
            "base": (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None,
            "abstract": sd.get("abstract", False),
            "elements": elements,
        }
        if sd["kind"] == "primitive-type":
            for e in sd["snapshot"]["element"]:
                for t in e.get("type", []) if e["path"] == f"{name}.value" else []:
                    for ext in t.get("extension", []):
                        if ext["url"] == REGEX_EXT:
                            regexes[name] = ext["valueString"]
    valuesets = {vs["url"]: vs for vs in package["ValueSet"]}
    codesystems = {cs["url"]: cs for cs in package["CodeSystem"]}
    expansions = {}
    for url in sorted(bound):
        expanded = expand(url, valuesets, codesystems)
        if expanded is not None:
            expansions[url] = expanded
    snapshots = {
        name: [
            {k: v for k, v in e.items() if k not in DROPPED_KEYS}
            for e in base_sds[name]["snapshot"]["element"]
        ]
        for name in names
    }
    return {
        "snapshots": snapshots,
        "fhirVersion": "4.0.1",
        "resourceTypes": sorted(resource_types),
        "structures": structures,
        "regex": regexes,
        "valueSets": expansions,
        "extensions": dict(sorted(extensions.items())),
    }


def write(path: Path, data: Any) -> None:
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    # mtime=0 keeps the file byte-identical across regenerations.
    path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="unpacked package folder (package/)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    data = build(args.package)
    snapshots = data.pop("snapshots")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write(args.output, data)
    # Full base elements are needed only to publish snapshots; kept apart so startup stays fast.
    write(args.output.parent / SNAPSHOTS.name, snapshots)
    print(
        f"{len(data['structures'])} structures, {len(data['valueSets'])} value sets, "
        f"{len(data['extensions'])} extensions -> {args.output} "
        f"({args.output.stat().st_size} bytes)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
