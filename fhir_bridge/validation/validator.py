"""The Validator facade: base structure checks plus claimed, explicit and mandated profiles.

https://hl7.org/fhir/R4/validation.html and https://hl7.org/fhir/R4/profiling.html
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.validation.compiler import Compiler
from fhir_bridge.validation.conformance import ProfileChecker
from fhir_bridge.validation.engine import Context, Engine
from fhir_bridge.validation.profiles import Profile, ProfileCompiler
from fhir_bridge.validation.snapshot import SnapshotError, generate
from fhir_bridge.validation.terminology import Terminology

# Elements whose fixed/pattern coding makes a profile mandatory for every resource carrying it.
MANDATING_ELEMENTS = ("code", "medication[x]", "medicationCodeableConcept")


class Validator:
    """Validates resource dicts against base R4 and registered profiles; never raises."""

    def __init__(self) -> None:
        self.compiler = Compiler()
        self.terminology = Terminology()
        self.engine = Engine(self.compiler, self.terminology)
        self.engine.resource_hook = self._apply_profiles
        self.profiles: dict[str, Profile] = {}
        self.profile_types: dict[str, str] = {}
        self.mandated: dict[str, dict[tuple[str, str], list[str]]] = {}
        self.checker = ProfileChecker(self.terminology, self.compiler.resource_types)
        self._profile_compiler = ProfileCompiler(self.profile_types)

    def validate(self, resource: Any, profiles: Sequence[str] = ()) -> list[Issue]:
        """Every issue found in `resource`, each with a FHIRPath-style expression.

        Profiles applied: `profiles`, the resource's meta.profile claims and the registered
        profiles mandated by its code. https://hl7.org/fhir/R4/resource-operation-validate.html
        """
        ctx = Context(top=resource, profiles=profiles)
        path = resource.get("resourceType") if isinstance(resource, dict) else None
        path = path if isinstance(path, str) else ""
        try:
            self.engine.resource(resource, path, ctx)
        except RecursionError:
            ctx.issues.append(Issue("error", "too-costly", "resource nesting is too deep", path))
        except Exception as exc:  # noqa: BLE001 - a verdict, never a crash, on any input
            text = f"content too malformed to check further ({type(exc).__name__})"
            ctx.issues.append(Issue("error", "processing", text, path))
        return ctx.issues

    def add_profiles(self, structure_definitions: Iterable[dict[str, Any]]) -> None:
        """Register profiles (differentials get snapshots against their base).

        CodeSystem and ValueSet resources in the same list are registered for bindings.
        Raises SnapshotError for a profile that cannot be placed on its base.
        https://hl7.org/fhir/R4/structuredefinition.html
        """
        resources = list(structure_definitions)
        # Value sets and extensions change what passes: values remembered as valid are not.
        self.engine.forget()
        self.checker.forget()
        for r in resources:
            if r.get("resourceType") == "CodeSystem":
                self.terminology.add_code_system(r)
        for r in resources:
            if r.get("resourceType") == "ValueSet":
                self.terminology.add_value_set(r)
        pending = [
            r
            for r in resources
            if r.get("resourceType") == "StructureDefinition"
            and r.get("derivation") == "constraint"
        ]
        for sd in pending:
            self.profile_types[sd["url"]] = str(sd["type"])
        # Profiles may build on each other: place the ones whose base is known first.
        while pending:
            ready = [sd for sd in pending if self._base_known(sd, pending)]
            if not ready:
                raise SnapshotError(f"circular or unknown base for {pending[0]['url']}")
            for sd in ready:
                self._register(sd)
                pending.remove(sd)

    def snapshot(self, sd: dict[str, Any]) -> dict[str, Any]:
        """`sd` with a snapshot generated from its differential against its base.

        https://hl7.org/fhir/R4/profiling.html#snapshot
        """
        return generate(sd, self._resolve)

    def _base_known(self, sd: dict[str, Any], pending: list[dict[str, Any]]) -> bool:
        base = sd.get("baseDefinition", "")
        return base not in {p["url"] for p in pending if p is not sd}

    def _resolve(self, url: str) -> list[dict[str, Any]] | None:
        profile = self.profiles.get(url)
        return None if profile is None else [dict(e) for e in profile.snapshot]

    def _register(self, sd: dict[str, Any]) -> None:
        if not sd.get("snapshot"):
            sd = self.snapshot(sd)
        profile = self._profile_compiler.compile(sd["url"], sd)
        self.profiles[sd["url"]] = profile
        if profile.type == "Extension":
            # Extensions are checked wherever they occur, like the core ones.
            types = [
                t["code"]
                for e in profile.snapshot
                if e.get("id") == "Extension.value[x]" and e.get("max") != "0"
                for t in e.get("type", [])
            ]
            self.engine.extensions[sd["url"]] = {"types": types}
        for table in self.mandated.values():  # a re-registered profile may mandate other codes
            for key, urls in table.items():
                table[key] = [u for u in urls if u != sd["url"]]
        for e in profile.snapshot:
            if e.get("id") not in {f"{profile.type}.{name}" for name in MANDATING_ELEMENTS}:
                continue
            concept = e.get("patternCodeableConcept") or e.get("fixedCodeableConcept") or {}
            for coding in concept.get("coding", []):
                key = (coding.get("system", ""), coding.get("code", ""))
                self.mandated.setdefault(profile.type, {}).setdefault(key, []).append(sd["url"])

    def _apply_profiles(self, obj: dict[str, Any], path: str, ctx: Context) -> None:
        urls: list[str] = []
        if obj is ctx.top:
            for url in ctx.profiles:
                if url.split("|")[0] in self.profiles:
                    urls.append(url.split("|")[0])
                else:
                    text = f"profile {url} is not known to this server"
                    ctx.issues.append(Issue("error", "processing", text, path))
        meta = obj.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        if isinstance(claimed, list):
            for i, claim in enumerate(claimed):
                if not isinstance(claim, str):
                    continue
                if (canonical := claim.split("|")[0]) in self.profiles:
                    urls.append(canonical)
                else:
                    text = f"claimed profile {claim} is not known; it was not checked"
                    ctx.issues.append(
                        Issue("warning", "processing", text, f"{path}.meta.profile[{i}]")
                    )
        mandated = self.mandated.get(obj["resourceType"])
        if mandated:
            urls.extend(self._mandated(obj, mandated))
        for url in dict.fromkeys(urls):
            self.checker.check(obj, self.profiles[url], path, ctx)

    @staticmethod
    def _mandated(obj: dict[str, Any], table: dict[tuple[str, str], list[str]]) -> list[str]:
        concept = obj.get("code") or obj.get("medicationCodeableConcept")
        if not isinstance(concept, dict):
            return []
        found: list[str] = []
        codings = concept.get("coding")
        for coding in codings if isinstance(codings, list) else ():
            if isinstance(coding, dict):
                key = (str(coding.get("system", "")), str(coding.get("code", "")))
                found.extend(table.get(key, ()))
        return found


@lru_cache(maxsize=1)
def get_validator() -> Validator:
    """The process-wide validator, compiled once."""
    return Validator()
