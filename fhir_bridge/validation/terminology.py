"""Binding checks against the vendored value set expansions.

https://hl7.org/fhir/R4/terminologies.html#strength: required bindings are errors; extensible
ones are warnings where the expansion is known; preferred and example bindings are not checked.
"""

from __future__ import annotations

from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.validation.definitions import load_definitions


class Terminology:
    """Expanded value sets: url -> {system: codes} and url -> all codes."""

    def __init__(self) -> None:
        self.by_system: dict[str, dict[str, frozenset[str]]] = {}
        self.codes: dict[str, frozenset[str]] = {}
        self.systems: dict[str, frozenset[str]] = {}
        for url, systems in load_definitions()["valueSets"].items():
            self.add(url, systems)

    def add(self, url: str, systems: dict[str, list[str]]) -> None:
        """Register an expansion (also used for project value sets)."""
        self.by_system[url] = {s: frozenset(codes) for s, codes in systems.items()}
        self.codes[url] = frozenset(c for codes in systems.values() for c in codes)

    def add_code_system(self, code_system: dict[str, Any]) -> None:
        """Register a CodeSystem's codes so value sets including the whole system expand."""
        url = code_system.get("url")
        if isinstance(url, str):
            self.systems[url] = frozenset(_codes(code_system.get("concept", [])))

    def add_value_set(self, value_set: dict[str, Any]) -> bool:
        """Register a ValueSet (enumerated concepts, whole known CodeSystems, or an expansion).

        Returns False when it cannot be expanded here (filters, unknown systems).
        https://hl7.org/fhir/R4/valueset.html#compositions
        """
        url = value_set.get("url")
        if not isinstance(url, str):
            return False
        systems: dict[str, list[str]] = {}
        for contains in value_set.get("expansion", {}).get("contains", []):
            systems.setdefault(contains.get("system", ""), []).append(contains.get("code", ""))
        for include in value_set.get("compose", {}).get("include", []):
            system = include.get("system")
            if include.get("filter") or include.get("valueSet") or not isinstance(system, str):
                return False
            if "concept" in include:
                codes = [c["code"] for c in include["concept"]]
            elif system in self.systems:
                codes = sorted(self.systems[system])
            else:
                return False
            systems.setdefault(system, []).extend(codes)
        if not systems:
            return False
        self.add(url, systems)
        return True

    def check(
        self, value: Any, type_code: str, binding: tuple[str, str], path: str
    ) -> Issue | None:
        """Check one bound value (code, Coding or CodeableConcept); None when acceptable."""
        strength, url = binding
        if strength not in ("required", "extensible"):
            return None
        codes = self.codes.get(url)
        if codes is None:
            return None
        if type_code in ("code", "string", "uri"):
            if not isinstance(value, str) or value in codes:
                return None
            return self._issue(strength, f"code {value!r} is not in value set {url}", path)
        if type_code == "Coding":
            if not isinstance(value, dict) or "code" not in value:
                return None
            if self._coding_ok(url, value):
                return None
            shown = f"{value.get('system', '')}#{value.get('code')}"
            return self._issue(strength, f"coding {shown} is not in value set {url}", path)
        if type_code == "CodeableConcept":
            if not isinstance(value, dict):
                return None
            found = value.get("coding")
            codings = [c for c in (found if isinstance(found, list) else ()) if isinstance(c, dict)]
            codings = [c for c in codings if isinstance(c.get("code"), str)]
            if not codings or any(self._coding_ok(url, c) for c in codings):
                return None
            return self._issue(strength, f"no coding is in value set {url}", path)
        return None

    def _coding_ok(self, url: str, coding: dict[str, Any]) -> bool:
        system = coding.get("system")
        if system is not None and not isinstance(system, str):
            return True  # malformed, reported by the structural walk
        codes = self.by_system[url].get(system) if system else self.codes[url]
        code = coding.get("code")
        return codes is not None and isinstance(code, str) and code in codes

    @staticmethod
    def _issue(strength: str, text: str, path: str) -> Issue:
        if strength == "required":
            return Issue("error", "code-invalid", text, path)
        return Issue("warning", "code-invalid", text, path)


def _codes(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out.extend(_codes(c.get("concept", [])))
    return out
