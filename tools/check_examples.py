"""Validate the official R4 examples of the supported types and count false errors.

Every official example is taken as valid, so each error reported is a false error:

    npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python tools/check_examples.py package/ [--show 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_bridge.domain.fhir import SUPPORTED_TYPES  # noqa: E402
from fhir_bridge.validation import get_validator  # noqa: E402

EXTRA_TYPES = ("Bundle", "Parameters", "OperationOutcome", "CapabilityStatement")
# Official examples that break R4 rules themselves; their errors are true, counted apart.
KNOWN_INVALID = {
    "Observation-clinical-gender.json": "performer references an Encounter (not a target)",
    "Questionnaire-qs1.json": "nested items without linkId (Questionnaire.item.linkId is 1..1)",
    "Bundle-dataelements.json": "7 fullUrls appear twice (bdl-7)",
    "StructureDefinition-Definition.json": "logical model, not abstract, no baseDefinition (sdf-4)",
    "StructureDefinition-Event.json": "logical model, not abstract, no baseDefinition (sdf-4)",
    "StructureDefinition-FiveWs.json": "logical model, not abstract, no baseDefinition (sdf-4)",
    "StructureDefinition-Request.json": "logical model, not abstract, no baseDefinition (sdf-4)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="unpacked examples package folder")
    parser.add_argument("--show", type=int, default=20, help="print this many false errors")
    args = parser.parse_args(argv)
    types = set(SUPPORTED_TYPES) | set(EXTRA_TYPES)
    validator = get_validator()
    files = errors_by_type = 0
    per_type: Counter[str] = Counter()
    failing: Counter[str] = Counter()
    warnings = 0
    by_message: Counter[str] = Counter()
    known: dict[str, int] = {}
    shown = 0
    started = time.perf_counter()
    for path in sorted(args.package.glob("*.json")):
        resource = orjson.loads(path.read_bytes())
        if not isinstance(resource, dict) or resource.get("resourceType") not in types:
            continue
        files += 1
        per_type[resource["resourceType"]] += 1
        issues = validator.validate(resource)
        errors = [i for i in issues if i.is_error]
        warnings += len(issues) - len(errors)
        if errors and path.name in KNOWN_INVALID:
            known[path.name] = len(errors)
            continue
        if errors:
            failing[resource["resourceType"]] += 1
            errors_by_type += len(errors)
        for issue in errors:
            key = issue.diagnostics.split(":")[0] if issue.code == "invariant" else issue.code
            by_message[key] += 1
            if shown < args.show:
                shown += 1
                print(f"{path.name}: {issue.expression}: [{issue.code}] {issue.diagnostics}")
    elapsed = time.perf_counter() - started
    print(f"\nfiles validated: {files} in {elapsed:.1f} s")
    print(f"files with false errors: {sum(failing.values())}; false errors: {errors_by_type}")
    print(f"warnings: {warnings}")
    print(f"known-invalid official examples (true errors, not counted above): {len(known)}")
    for name, count in sorted(known.items()):
        print(f"  {name}: {count} errors - {KNOWN_INVALID[name]}")
    for rt in sorted(per_type):
        print(f"  {rt:28} {per_type[rt]:5} files, {failing[rt]:4} with errors")
    for key, count in by_message.most_common(15):
        print(f"  {count:5}  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
