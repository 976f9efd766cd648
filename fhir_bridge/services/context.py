"""What every service needs from the running application: the store and the write checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from fhir_bridge.domain.cost import Limits
from fhir_bridge.domain.issues import Issue
from fhir_bridge.domain.memo import plain_json
from fhir_bridge.store.base import ResourceStore, StoreSession

WriteCheck = Callable[[dict[str, Any]], list[Issue]]
ProfileValidator = Callable[[dict[str, Any], Sequence[str]], list[Issue]]
Transform = Callable[[dict[str, Any]], dict[str, Any]]
Derivation = Callable[[dict[str, Any]], list[dict[str, Any]]]
Transition = Callable[[dict[str, Any], dict[str, Any]], list[Issue]]  # (current, new) -> issues


@dataclass(frozen=True)
class RecordFindings:
    """What a record rule found: issues (errors refuse the write) and meta.tag codings that
    mark the stored resource for the data-quality views."""

    issues: list[Issue] = field(default_factory=list)
    tags: list[dict[str, str]] = field(default_factory=list)


# A rule over the resource and what the store holds (other doses of the session, ...), run in
# the write's own session so that it sees the resources written before it in a transaction.
RecordRule = Callable[[StoreSession, dict[str, Any]], RecordFindings]

_ENCODED_PATCH = b"json-patch+json"  # the content type of a PATCH entry's Binary


@runtime_checkable
class Screened(Protocol):
    """A transform that can tell from a request body that no resource in it needs it."""

    def may_apply(self, raw: bytes) -> bool: ...


@dataclass
class ServiceContext:
    store: ResourceStore
    # Conformance: base R4 plus claimed, requested and mandated profiles.
    validator: ProfileValidator
    # Applied in this order to every resource written: transforms (e.g. local codes translated
    # through ConceptMaps), the validator and the rules (errors refuse the write), then
    # derivations, whose resources (e.g. score Observations from a QuestionnaireResponse) are
    # written in the same transaction.
    transforms: list[Transform] = field(default_factory=list)
    rules: list[WriteCheck] = field(default_factory=list)
    derivations: list[Derivation] = field(default_factory=list)
    # Rules on how a resource may change, by resource type (e.g. a withdrawn ResearchSubject
    # stays withdrawn); checked on update against the current version.
    transitions: dict[str, list[Transition]] = field(default_factory=dict)
    record_rules: list[RecordRule] = field(default_factory=list)
    # Set by for_body: the request's JSON is plain (memo.plain_json) and no transform applies,
    # so the resources created as they were parsed from it are checked with
    # memo.SharedKeys(plain=True) (resources.prepare).
    plain_body: bool = field(default=False, init=False)
    default_page_size: int = 20
    max_page_size: int = 1000
    max_bundle_entries: int = 10_000
    limits: Limits = field(default_factory=Limits)
    # Local references of a write must name a resource (services/local_references.py); off
    # for bulk loads that write in dependency order. Set after construction, as plain_body.
    check_references: bool = field(default=True, init=False)

    def for_body(self, raw: bytes) -> ServiceContext:
        """This context for the resources of the JSON text `raw` (a Bundle's body): without
        the transforms none of them needs (by their own word: Screened), and plain_body when it
        holds. A few scans of the body instead of work on every resource.

        A PATCH entry's JSON Patch is base64 in a Binary (contentType
        application/json-patch+json): what it writes is not in the body's text, so a body
        with one keeps every transform. (Spelled with escapes, the content type brings a
        backslash: the body is then not plain, and may_translate keeps the translation.)"""
        patched = _ENCODED_PATCH in raw
        kept = [
            t for t in self.transforms if patched or not isinstance(t, Screened) or t.may_apply(raw)
        ]
        plain = not kept and plain_json(raw)
        if len(kept) == len(self.transforms) and plain == self.plain_body:
            return self
        scoped = replace(self, transforms=kept)
        scoped.plain_body = plain
        scoped.check_references = self.check_references  # replace() leaves it out
        return scoped
