"""Regenerate fhir_bridge/domain/search_parameters.json from the official R4 package.

Usage: python tools/vendor_search_parameters.py [PACKAGE_DIR_OR_TGZ]

Without an argument it runs `npm pack` for hl7.fhir.r4.core@4.0.1 and, when the registry no
longer serves that package, for hl7.fhir.r4.examples@4.0.1, which carries the same
SearchParameter and StructureDefinition resources of the R4 specification (both CC0).
Kept: the non-experimental definitions of the supported types and of Resource, the union
branches that apply to each type, reference targets, composite parts, and the FHIR types of
every element path those expressions walk through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_bridge.domain.fhir import SUPPORTED_TYPES  # noqa: E402
from fhir_bridge.domain.search_parameters import (  # noqa: E402
    COMMON,
    DATA_FILE,
    Step,
    branches_for,
    parse_path,
    split_top,
)

PACKAGES = ("hl7.fhir.r4.core@4.0.1", "hl7.fhir.r4.examples@4.0.1")
# Served without an index: _id by resources.id; the rest need a text engine or are special.
SKIPPED = {"_id", "_text", "_content", "_query", "_filter"}
ANY_TARGET_THRESHOLD = 100  # a target list this long means "any resource type"
PRIMITIVE_ALIASES = {"http://hl7.org/fhirpath/System.String": "string"}


def fetch_package(workdir: Path) -> Path:
    for spec in PACKAGES:
        done = subprocess.run(
            ["npm", "pack", spec], cwd=workdir, capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            tgz = workdir / done.stdout.strip().splitlines()[-1]
            print(f"using {spec}", file=sys.stderr)
            return tgz
    raise SystemExit(f"npm pack failed for {PACKAGES}")


def unpack(source: Path, workdir: Path) -> Path:
    if source.is_dir():
        return source / "package" if (source / "package").is_dir() else source
    with tarfile.open(source) as archive:
        archive.extractall(workdir, filter="data")
    return workdir / "package"


class Definitions:
    """Element types from StructureDefinition snapshots, loaded on demand."""

    def __init__(self, package: Path) -> None:
        self.package = package
        self.cache: dict[str, dict[str, tuple[list[str], bool]]] = {}

    def elements(self, type_name: str) -> dict[str, tuple[list[str], bool]]:
        if type_name not in self.cache:
            path = self.package / f"StructureDefinition-{type_name}.json"
            table: dict[str, tuple[list[str], bool]] = {}
            if path.exists():
                definition = json.loads(path.read_text(encoding="utf-8"))
                for element in definition["snapshot"]["element"]:
                    codes = [t["code"] for t in element.get("type", [])]
                    types = [PRIMITIVE_ALIASES.get(code, code) for code in codes]
                    if "contentReference" in element:  # "@path": same content as that element
                        types = ["@" + element["contentReference"].lstrip("#")]
                    name = element["path"]
                    choice = name.endswith("[x]")
                    table[name.removesuffix("[x]")] = (types, choice)
            self.cache[type_name] = table
        return self.cache[type_name]

    def lookup(self, context: str, field: str) -> tuple[str, list[str], bool] | None:
        """(element path, types, is choice) of `field` under a resource path or datatype name."""
        owner = context.split(".", 1)[0]
        path = f"{context}.{field}"
        found = self.elements(owner).get(path)
        return None if found is None else (path, found[0], found[1])


def walk(steps: list[Step], context: str, defs: Definitions, elements: dict[str, Any]) -> None:
    """Record the types of every element the steps pass through, starting at `context`."""
    contexts = [context]
    for step in steps:
        if step.kind == "as":
            contexts = [step.name[0].upper() + step.name[1:]]
            continue
        if step.kind != "field":
            continue
        following: list[str] = []
        for ctx in contexts:
            found = defs.lookup(ctx, step.name)
            if found is None:
                continue
            path, types, choice = found
            elements[path + ("[x]" if choice else "")] = types
            for type_name in types:
                if type_name.startswith("@"):
                    following.append(type_name[1:])
                elif type_name in ("BackboneElement", "Element") or not type_name[0].isupper():
                    following.append(path)
                else:
                    following.append(type_name)
        contexts = list(dict.fromkeys(following))


def vendor(package: Path) -> dict[str, Any]:
    defs = Definitions(package)
    wanted = set(SUPPORTED_TYPES) | {COMMON}
    parameters: dict[str, dict[str, Any]] = {}
    elements: dict[str, Any] = {}
    for file in sorted(package.glob("SearchParameter-*.json")):
        raw = json.loads(file.read_text(encoding="utf-8"))
        if raw.get("experimental") or "base" not in raw or raw["code"] in SKIPPED:
            continue
        expression = raw.get("expression", "")
        for base in raw["base"]:
            if base not in wanted or not expression:
                continue
            mine = branches_for(expression, base) if len(raw["base"]) > 1 else [expression]
            mine = split_top(" | ".join(mine), "|") if mine else []
            entry: dict[str, Any] = {"type": raw["type"], "expression": " | ".join(mine)}
            targets = raw.get("target", [])
            if targets:
                many = len(targets) >= ANY_TARGET_THRESHOLD
                entry["targets"] = ["*"] if many else sorted(targets)
            for branch in mine:
                steps = parse_path(branch)
                if steps:
                    walk(steps[1:], steps[0].name, defs, elements)
            if raw.get("component"):
                entry["components"] = [
                    [c["definition"].rsplit("/", 1)[-1], c["expression"]] for c in raw["component"]
                ]
            parameters.setdefault(base, {})[raw["code"]] = entry
    # Composite parts name other definitions by id; store the part's code on this type instead.
    by_id = _codes_by_id(package)
    for base, params in parameters.items():
        for entry in params.values():
            for part in entry.get("components", []):
                part[0] = by_id.get(part[0], part[0])
                for branch in split_top(part[1], "|"):
                    steps = parse_path(branch)
                    if steps:
                        for context in _composite_contexts(entry["expression"], base):
                            walk(steps, context, defs, elements)
    return {
        "source": (
            "HL7 FHIR R4 4.0.1 SearchParameter and StructureDefinition resources (CC0), "
            "generated by tools/vendor_search_parameters.py"
        ),
        "fhirVersion": "4.0.1",
        "parameters": {key: dict(sorted(v.items())) for key, v in sorted(parameters.items())},
        "elements": dict(sorted(elements.items())),
    }


def _codes_by_id(package: Path) -> dict[str, str]:
    codes = {}
    for file in package.glob("SearchParameter-*.json"):
        raw = json.loads(file.read_text(encoding="utf-8"))
        codes[raw["id"]] = raw.get("code", raw["id"])
    return codes


def _composite_contexts(expression: str, base: str) -> list[str]:
    contexts = []
    for branch in split_top(expression, "|"):
        steps = parse_path(branch) or []
        contexts.append(".".join(s.name for s in steps if s.kind == "field") or base)
    return contexts


def dump(data: dict[str, Any]) -> str:
    """JSON with one line per parameter and per element: small, and diffs stay readable."""

    def line(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    lines = ["{", f' "source": {line(data["source"])},']
    lines.append(f' "fhirVersion": {line(data["fhirVersion"])},')
    lines.append(' "parameters": {')
    types = list(data["parameters"].items())
    for index, (type_name, params) in enumerate(types):
        lines.append(f"  {line(type_name)}: {{")
        rows = [f"   {line(code)}: {line(entry)}" for code, entry in params.items()]
        lines.append(",\n".join(rows))
        lines.append("  }" + ("," if index < len(types) - 1 else ""))
    lines.append(" },")
    lines.append(' "elements": {')
    rows = [f"  {line(path)}: {line(types)}" for path, types in data["elements"].items()]
    lines.append(",\n".join(rows))
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        source = Path(sys.argv[1]) if len(sys.argv) > 1 else fetch_package(workdir)
        data = vendor(unpack(source, workdir))
    DATA_FILE.write_text(dump(data), encoding="utf-8")
    count = sum(len(v) for v in data["parameters"].values())
    print(f"wrote {DATA_FILE.relative_to(ROOT)}: {count} parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
