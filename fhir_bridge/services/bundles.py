"""Transaction and batch Bundles posted to the base: https://hl7.org/fhir/R4/http.html#transaction.

A transaction runs in one store session: every entry commits or none does. Entries are
processed DELETE, POST, PUT, then GET, as the spec orders them; `urn:uuid:` fullUrls and
conditional references (`Patient?identifier=...`) are resolved first and every reference to
them is rewritten. A batch processes each entry on its own and reports per entry.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fhir_bridge.domain import fhir_json
from fhir_bridge.domain.cost import Budget, check_shape
from fhir_bridge.domain.fhir import has_nul, parse_json
from fhir_bridge.domain.issues import Issue, operation_outcome
from fhir_bridge.errors import (
    FHIRBridgeError,
    InvalidRequestError,
    PayloadTooLargeError,
    PreconditionFailedError,
    UnprocessableResourceError,
)
from fhir_bridge.services import bundle_json, resources, search
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.local_references import LocalTargets
from fhir_bridge.services.patch import apply_patch
from fhir_bridge.store import search as store_search
from fhir_bridge.store.base import StoredResource, StoreSession

StatusFor = Callable[[FHIRBridgeError], int]
log = logging.getLogger(__name__)
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass
class _Request:
    index: int
    method: str
    url: str
    resource_type: str
    resource_id: str | None
    query: str | None
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    patch: Any = None  # JSON Patch operations of a PATCH entry
    version: str | None = None  # GET Type/id/_history/vid

    def copy(self) -> _Request:
        """A copy to plan on; dataclasses.replace took 5 µs per entry."""
        return _Request(
            self.index,
            self.method,
            self.url,
            self.resource_type,
            self.resource_id,
            self.query,
            self.resource,
            self.full_url,
            self.if_none_exist,
            self.if_match,
            self.patch,
            self.version,
        )


# One Bundle at a time per process, from parsing its body on. The work is CPU-bound Python: two
# at once in one process only share the interpreter, and the one holding the database's write
# lock then holds it longer while another server process waits for it. One at a time, a
# process writes while the others plan (bench/ingest_bench.py, 2 processes, 4 clients,
# interleaved runs: 8,631-9,118 -> 9,332-9,567 resources/s with transactions one at a time,
# 9,164-9,271 -> 9,422-9,894 with their parsing in it too).
_ONE_AT_A_TIME = threading.Lock()


def process(
    ctx: ServiceContext, body: bytes, base: str, status_for: StatusFor, minimal: bool = False
) -> bytes:
    """Run a posted transaction or batch Bundle (the request body); returns the response
    Bundle's bytes, without the entries' resources when `minimal` (Prefer: return=minimal)."""
    with _ONE_AT_A_TIME:
        bundle = parse_json(body)
        check_shape(bundle, ctx.limits)  # the entries share one budget
        kind, entries = _entries(ctx, bundle)
        if kind == "transaction":
            return transaction(ctx.for_body(body), entries, base, minimal)
    # A batch's entries are independent: its reads do not wait for other Bundles, its writes
    # take their turn entry by entry (_batch).
    return _batch(ctx.for_body(body), entries, base, status_for, minimal)


def _entries(ctx: ServiceContext, bundle: Any) -> tuple[str, list[Any]]:
    """The Bundle's type (transaction or batch) and its entries, checked."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequestError(
            "POST to the base takes a Bundle", expression="resourceType", code="structure"
        )
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise InvalidRequestError(
            f"Bundle.type must be transaction or batch, not '{kind}'", expression="Bundle.type"
        )
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidRequestError("Bundle.entry must be an array", expression="Bundle.entry")
    if len(entries) > ctx.max_bundle_entries:
        raise PayloadTooLargeError(
            f"The Bundle has {len(entries)} entries; the limit is {ctx.max_bundle_entries}",
            expression="Bundle.entry",
        )
    return kind, entries


def transaction(ctx: ServiceContext, entries: list[Any], base: str, minimal: bool = False) -> bytes:
    """Run the entries of a transaction Bundle atomically; the transaction-response's bytes."""
    requests = [_parse_entry(i, e) for i, e in enumerate(entries)]
    return _transaction(ctx, requests, base, minimal)


def _parse_entry(index: int, entry: Any) -> _Request:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        raise InvalidRequestError("A Bundle entry must be an object", expression=where)
    request = entry.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise InvalidRequestError(
            "Each entry needs request.method and request.url",
            code="required",
            expression=f"{where}.request",
        )
    method = str(request["method"]).upper()
    if method not in _ORDER:
        raise InvalidRequestError(
            f"Method '{method}' is not supported in a Bundle", expression=f"{where}.request.method"
        )
    url = str(request["url"]).lstrip("/")
    path, _, query = url.partition("?")
    parts = path.split("/")
    resource_type = parts[0]
    version = _version(parts, method, f"{where}.request.url")
    try:
        resources.check_type(resource_type)
    except FHIRBridgeError as exc:
        raise InvalidRequestError(
            exc.issues[0].diagnostics, code="not-supported", expression=f"{where}.request.url"
        ) from exc
    for name, value in (
        ("fullUrl", entry.get("fullUrl")),
        ("request.ifNoneExist", request.get("ifNoneExist")),
        ("request.ifMatch", request.get("ifMatch")),
    ):
        if value is not None and not isinstance(value, str):
            raise InvalidRequestError(f"{name} must be a string", expression=f"{where}.{name}")
    conditional = method in ("DELETE", "PUT") and bool(query)
    if method in ("DELETE", "PATCH", "PUT") and not (len(parts) > 1 and parts[1] or conditional):
        raise InvalidRequestError(
            f"A {method} entry's url needs an id"
            + (" or a condition" if method in ("DELETE", "PUT") else ""),
            expression=f"{where}.request.url",
        )
    if method == "POST" and (len(parts) > 1 or query):
        raise InvalidRequestError(
            "A POST entry's url is the resource type only; use ifNoneExist for conditions",
            expression=f"{where}.request.url",
        )
    resource = entry.get("resource")
    if method == "PATCH":
        resource = _patch_operations(resource, where)
    elif method in ("POST", "PUT"):
        if not isinstance(resource, dict):
            raise InvalidRequestError(
                f"A {method} entry needs a resource",
                code="required",
                expression=f"{where}.resource",
            )
        if resource.get("resourceType") != resource_type:
            raise InvalidRequestError(
                f"resourceType '{resource.get('resourceType')}' does not match the request url",
                expression=f"{where}.resource.resourceType",
            )
        if "id" in resource and not isinstance(resource["id"], str):
            raise InvalidRequestError("id must be a string", expression=f"{where}.resource.id")
    return _Request(
        index=index,
        method=method,
        url=url,
        resource_type=resource_type,
        resource_id=parts[1] if len(parts) > 1 and parts[1] else None,
        query=query or None,
        # a resource sent with a GET or DELETE entry is ignored, as it is in a plain GET
        resource=dict(resource)
        if isinstance(resource, dict) and method in ("POST", "PUT")
        else None,
        patch=resource if method == "PATCH" else None,
        full_url=entry.get("fullUrl"),
        if_none_exist=request.get("ifNoneExist"),
        if_match=request.get("ifMatch"),
        version=version,
    )


def _version(parts: list[str], method: str, where: str) -> str | None:
    """`Type`, `Type/id`, or for GET `Type/id/_history/vid`; anything longer is refused."""
    if len(parts) <= 2:
        return None
    if method == "GET" and len(parts) == 4 and parts[2] == "_history" and parts[3]:
        return parts[3]
    raise InvalidRequestError(
        "request.url must be Type, Type/id or (GET) Type/id/_history/vid", expression=where
    )


class _AtEntry:
    """Errors raised inside `with _AtEntry(index)` name entry `index` in their paths: the
    client must know which. A class: as a @contextmanager generator it cost 46k instructions
    per resource (bench/instructions.py: 985k -> 939k)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        if isinstance(exc, FHIRBridgeError):
            raise type(exc)(issues=_locate(exc.issues, self.index)) from exc


def _transaction(ctx: ServiceContext, requests: list[_Request], base: str, minimal: bool) -> bytes:
    """Plan and check the creates before the write lock (the CPU work: validation, rules,
    index rows), then write under it. The plan rests on the database reads it made
    (conditional creates, updates and references): when the same reads give other answers
    under the lock (another writer came between), the plan is made again there."""
    _check_unique_full_urls(requests)
    originals = [r.copy() for r in requests]
    with ctx.store.session() as session:
        plan = _plan(ctx, session, requests)
    results: dict[int, bundle_json.Entry] = {}
    budget = _get_budget(ctx)
    with ctx.store.session(write=True) as session:
        if not plan.reads.hold(session):
            requests = [r.copy() for r in originals]
            plan = _plan(ctx, session, requests)
        targets = _local_targets(ctx, session, requests)
        for request in sorted(requests, key=lambda r: (_ORDER[r.method], r.index)):
            with _AtEntry(request.index):
                results[request.index] = _run(
                    ctx,
                    session,
                    request,
                    base,
                    minimal,
                    budget,
                    plan.supplied,
                    plan.prepared,
                    targets,
                )
                if request.index not in plan.prepared:  # checked by _run; all-or-nothing
                    _check_supplied(request, plan.expected)
    return bundle_json.build("transaction-response", [results[i] for i in sorted(results)])


def _local_targets(
    ctx: ServiceContext, session: StoreSession, requests: list[_Request]
) -> LocalTargets | None:
    """What the local references of a transaction's writes may name: the resources of the
    database and those its entries create, update or patch, in whatever order."""
    if not ctx.check_references:
        return None
    written = [
        f"{r.resource_type}/{r.resource_id}"
        for r in requests
        if r.resource_id and r.method in ("POST", "PUT", "PATCH")
    ]
    return LocalTargets(session, written)


class _Reads:
    """The database reads a transaction's plan rests on, with the answers they gave."""

    def __init__(self, session: StoreSession) -> None:
        self.session = session
        self._seen: list[tuple[Callable[..., Any], _Request, str | None, Any]] = []

    def match(self, request: _Request, query: str | None) -> str | None:
        found = _single_match(self.session, request, query)
        self._seen.append((_single_match, request, query, found))
        return found

    def reference(self, request: _Request, ref: str) -> str:
        found = _conditional_reference(self.session, request, ref)
        self._seen.append((_conditional_reference, request, ref, found))
        return found

    def hold(self, session: StoreSession) -> bool:
        """Whether every read gives the same answer in `session`."""
        try:
            return all(read(session, r, arg) == found for read, r, arg, found in self._seen)
        except FHIRBridgeError:
            return False


@dataclass
class _Plan:
    reads: _Reads
    supplied: set[str]
    expected: dict[str, list[dict[str, Any]]]
    prepared: dict[int, resources.Prepared]  # by entry index: the creates, checked


def _plan(ctx: ServiceContext, session: StoreSession, requests: list[_Request]) -> _Plan:
    """Resolve identities and references with `session`'s reads, then check every create."""
    reads = _Reads(session)
    aliases = _resolve_identities(reads, requests)
    for request in requests:
        with _AtEntry(request.index):
            _rewrite_references(reads, request, aliases)
    supplied = _derived_sources(requests)
    prepared: dict[int, resources.Prepared] = {}
    for request in requests:
        if request.method != "POST" or request.if_none_exist or request.resource is None:
            continue
        with _AtEntry(request.index):
            source = f"{request.resource_type}/{request.resource_id}"
            resource = {**request.resource, "id": request.resource_id}
            derive = source not in supplied
            prepared[request.index] = resources.prepare(ctx, resource, derive, ctx.plain_body)
    # Compared once every create passed its checks: derivations read well-formed sources.
    expected = _expected_derivations(ctx, requests, supplied, prepared)
    for request in requests:
        if request.index not in prepared:
            continue
        with _AtEntry(request.index):
            _check_supplied(request, expected)
    return _Plan(reads, supplied, expected, prepared)


def _batch(
    ctx: ServiceContext, entries: list[Any], base: str, status_for: StatusFor, minimal: bool
) -> bytes:
    results = []
    budget = _get_budget(ctx)
    for index, entry in enumerate(entries):
        try:
            request = _parse_entry(index, entry)
            write = request.method != "GET"
            with _ONE_AT_A_TIME if write else nullcontext(), ctx.store.session(write) as session:
                reads = _Reads(session)
                _resolve_identities(reads, [request])
                _rewrite_references(reads, request, {})
                done = _run(ctx, session, request, base, minimal, budget)
            results.append(done)  # only once committed: the commit itself may fail
        except FHIRBridgeError as exc:
            status = status_for(exc)
            if status >= 500:
                log.error("batch entry %d failed", index, exc_info=exc)
            response = {"status": str(status), "outcome": operation_outcome(exc.issues)}
            results.append(bundle_json.Entry(None, extra={"response": response}))
    return bundle_json.build("batch-response", results)


def _patch_operations(resource: Any, where: str) -> Any:
    """A PATCH entry carries its JSON Patch as a Binary resource (R4 transaction convention)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise InvalidRequestError(
            "A PATCH entry needs a Binary resource holding a JSON Patch",
            code="required",
            expression=f"{where}.resource",
        )
    if resource.get("contentType") != "application/json-patch+json":
        raise InvalidRequestError(
            "The Binary's contentType must be application/json-patch+json",
            expression=f"{where}.resource.contentType",
        )
    try:
        data = base64.b64decode(resource.get("data", ""), validate=True)
        if has_nul(data):
            raise InvalidRequestError(
                "Strings must not contain the NUL character",
                code="value",
                expression=f"{where}.resource.data",
            )
        return fhir_json.loads(data)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidRequestError(
            "The Binary's data is not a base64 JSON Patch", expression=f"{where}.resource.data"
        ) from exc


def _check_unique_full_urls(requests: list[_Request]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.full_url:
            if request.full_url in seen:
                raise InvalidRequestError(
                    f"fullUrl '{request.full_url}' appears more than once",
                    expression=f"Bundle.entry[{request.index}].fullUrl",
                )
            seen.add(request.full_url)


def _resolve_identities(reads: _Reads, requests: list[_Request]) -> dict[str, str]:
    """fullUrl → `Type/id` for every entry that creates or updates, before anything is written.

    Two entries may not act on one resource (https://hl7.org/fhir/R4/http.html#trules): the
    same target twice, or two creates under the same condition, fail the transaction."""
    aliases: dict[str, str] = {}
    targets: dict[tuple[str, str], int] = {}
    for request in requests:
        with _AtEntry(request.index):
            _resolve_identity(reads, request, targets)
        if request.full_url and request.resource_id and request.resource is not None:
            aliases[request.full_url] = f"{request.resource_type}/{request.resource_id}"
    return aliases


def _resolve_identity(
    reads: _Reads, request: _Request, targets: dict[tuple[str, str], int]
) -> None:
    """The id the entry acts on, claimed in `targets`; a condition is claimed too, so that two
    entries cannot create under one (a POST's ifNoneExist, a conditional PUT's url)."""
    condition = request.if_none_exist if request.method == "POST" else request.query
    if condition and request.method in ("POST", "PUT"):
        _claim(targets, request, f"?{condition}")
    if request.method == "POST":
        match = reads.match(request, condition)
        request.resource_id = match or resources.new_id()
        request.if_none_exist = None if match is None else condition
    elif request.method == "PUT" and condition:  # conditional update
        assert request.resource is not None
        match = reads.match(request, condition)
        body_id = request.resource.get("id")
        if match and body_id and body_id != match:  # https://hl7.org/fhir/R4/http.html#cond-update
            raise InvalidRequestError(
                "The body id differs from the resource the condition matched",
                expression=f"{request.resource_type}.id",
            )
        request.resource_id = match or body_id or resources.new_id()
    elif request.method == "DELETE" and condition:  # conditional delete: single match only
        request.resource_id = reads.match(request, condition)
    _claim(targets, request)


def _claim(targets: dict[tuple[str, str], int], request: _Request, key: str | None = None) -> None:
    """Record that `request` acts on a resource (or a condition); a second claim fails."""
    key = key or request.resource_id
    if key is None or request.method == "GET":
        return
    if (request.resource_type, key) in targets:
        first = targets[(request.resource_type, key)]
        raise InvalidRequestError(
            f"Entries {first} and {request.index} act on the same resource "
            f"({request.resource_type}/{key.lstrip('/')}); a transaction may touch it once",
            expression=f"Bundle.entry[{request.index}].request",
        )
    targets[(request.resource_type, key)] = request.index


def _single_match(session: StoreSession, request: _Request, query: str | None) -> str | None:
    if not query:
        return None
    element = "ifNoneExist" if request.method == "POST" else "url"
    where = f"Bundle.entry[{request.index}].request.{element}"
    try:
        return resources.single_match(session, request.resource_type, query, where)
    except InvalidRequestError as exc:  # the condition's own error: name where it is
        raise _at(exc, where) from exc


def _at(exc: FHIRBridgeError, expression: str) -> FHIRBridgeError:
    """`exc` with each issue's path replaced by `expression`."""
    moved = [Issue(i.severity, i.code, i.diagnostics, expression) for i in exc.issues]
    return type(exc)(issues=moved)


def _rewrite_references(reads: _Reads, request: _Request, aliases: dict[str, str]) -> None:
    """Resolve the `urn:uuid:` and conditional references of the entry's resource, or of what
    its JSON Patch writes: every `"reference": "<string>"` pair, wherever it nests. Containers
    on the way to a changed reference are copied; the rest is shared with the posted resource,
    which stays as posted (a plan made again starts from it)."""
    written = not (request.method == "POST" and request.if_none_exist)  # else one matched
    # a relative reference of an entry with an absolute fullUrl is relative to its base
    # (https://hl7.org/fhir/R4/bundle.html#references): `Patient/1` may name another entry
    base = _full_url_base(request.full_url)

    def target(ref: str) -> str:
        if ref in aliases:
            return aliases[ref]
        if base and f"{base}/{ref}" in aliases:
            return aliases[f"{base}/{ref}"]
        if written and ref.startswith(("urn:uuid:", "urn:oid:")):  # names no entry: dangling
            raise InvalidRequestError(
                f"The reference '{ref}' names no resource this Bundle creates or updates "
                "(a batch's entries cannot refer to each other)",
                expression=f"{request.resource_type}",
            )
        if "?" in ref and not ref.startswith(("http://", "https://", "urn:")):
            return reads.reference(request, ref)
        return ref

    if request.resource is not None:
        request.resource = _rewritten(request.resource, target)
    elif isinstance(request.patch, list):
        request.patch = [_patch_operation(op, target) for op in request.patch]


def _full_url_base(full_url: str | None) -> str | None:
    """`http://x/fhir` of the fullUrl `http://x/fhir/Patient/1`; None for a urn: or none."""
    if not full_url or "://" not in full_url:
        return None
    parts = full_url.split("/")
    return "/".join(parts[:-2]) if len(parts) > 4 and parts[-2][:1].isupper() else None


def _patch_operation(op: Any, target: Callable[[str], str]) -> Any:
    """A JSON Patch operation with the references its value writes resolved: `"reference"`
    pairs in the value, or the value itself when the path ends in `/reference`."""
    if not isinstance(op, dict) or "value" not in op:
        return op
    value, path = op["value"], op.get("path")
    new: Any  # a string, or what the value was
    if isinstance(value, str) and isinstance(path, str) and path.endswith("/reference"):
        new = target(value)
    else:
        new = _rewritten(value, target)
    return op if new is value else {**op, "value": new}


def _rewritten(value: Any, target: Callable[[str], str]) -> Any:
    """`value` with each reference string `r` replaced by `target(r)`; `value` itself when
    nothing changes."""
    if isinstance(value, dict):
        copy: dict[str, Any] | None = None
        new: Any  # a string, or a container
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                new = target(item)
            elif isinstance(item, (dict, list)):
                new = _rewritten(item, target)
            else:
                continue
            if new is not item:
                copy = dict(value) if copy is None else copy
                copy[key] = new
        return value if copy is None else copy
    if isinstance(value, list):
        items: list[Any] | None = None
        for index, item in enumerate(value):
            new = _rewritten(item, target) if isinstance(item, (dict, list)) else item
            if new is not item:
                items = list(value) if items is None else items
                items[index] = new
        return value if items is None else items
    return value


def _conditional_reference(session: StoreSession, request: _Request, ref: str) -> str:
    resource_type, _, query = ref.partition("?")
    where = f"Bundle.entry[{request.index}].resource"
    try:
        resources.check_type(resource_type)
        matches = store_search.find_ids(session.execute, resource_type, query)
    except FHIRBridgeError as exc:  # not the server's: the reference is what is wrong
        raise _at(InvalidRequestError(exc.issues[0].diagnostics), where) from exc
    if len(matches) != 1:
        raise PreconditionFailedError(
            f"Conditional reference '{ref}' matched {len(matches)} resources, not one",
            code="multiple-matches" if matches else "not-found",
            expression=f"Bundle.entry[{request.index}].resource",
        )
    return f"{resource_type}/{matches[0]}"


def _derived_sources(requests: list[_Request]) -> set[str]:
    """References that Observations of this Bundle say they derive from: a client that sends a
    QuestionnaireResponse with its own score Observations (SDC extraction done client-side)
    gets no second, server-derived score."""
    sources: set[str] = set()
    for request in requests:
        resource = request.resource or {}
        if resource.get("resourceType") == "Observation":
            for ref in _list(resource.get("derivedFrom")):
                if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                    sources.add(ref["reference"])
    return sources


def _expected_derivations(
    ctx: ServiceContext,
    requests: list[_Request],
    supplied: set[str],
    prepared: dict[int, resources.Prepared],
) -> dict[str, list[dict[str, Any]]]:
    """What the server would derive from each source whose derived resources the client sent;
    a source not among the `prepared` creates is checked first (errors refuse it)."""
    expected: dict[str, list[dict[str, Any]]] = {}
    for request in requests:
        source = f"{request.resource_type}/{request.resource_id}"
        if request.resource is None or source not in supplied:
            continue
        with _AtEntry(request.index):
            resource = {**request.resource, "id": request.resource_id}
            if request.index not in prepared:  # an update: not checked yet
                resources.validate_for_write(ctx, resource)
            expected[source] = [item for rule in ctx.derivations for item in rule(resource)]
    return expected


def _check_supplied(request: _Request, expected: dict[str, list[dict[str, Any]]]) -> None:
    """A client-sent derived resource (e.g. a score) must agree with the server's derivation:
    the same value, and the same component values when it carries components. Reads resources
    not checked yet (a conditional create that matched) without failing on their shape."""
    resource = request.resource or {}
    for ref in _list(resource.get("derivedFrom")):
        source = ref.get("reference") if isinstance(ref, dict) else None
        for derived in expected.get(source, []) if isinstance(source, str) else ():
            if not _same_code(derived, resource):
                continue
            (want, want_items), (got, got_items) = _values(derived), _values(resource)
            if got != want or (got_items and got_items != want_items):
                raise UnprocessableResourceError(
                    f"The value does not match the one computed from {source}: {want}",
                    code="business-rule",
                    expression=f"{resource.get('resourceType')}.value",
                )


def _same_code(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def codings(r: dict[str, Any]) -> set[tuple[str, str]]:
        code = r.get("code")
        found = _list(code.get("coding") if isinstance(code, dict) else None)
        pairs = [(c.get("system"), c.get("code")) for c in found if isinstance(c, dict)]
        return {(s, c) for s, c in pairs if isinstance(s, str) and isinstance(c, str)}

    return bool(codings(a) & codings(b))


def _values(resource: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The value (a Quantity's number) and the component values, in order."""

    def value(node: dict[str, Any]) -> Any:
        for key, item in node.items():
            if key.startswith("value"):
                return item.get("value") if isinstance(item, dict) else item
        return None

    components = _list(resource.get("component"))
    return value(resource), [value(c) for c in components if isinstance(c, dict)]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _run(
    ctx: ServiceContext,
    session: StoreSession,
    request: _Request,
    base: str,
    minimal: bool,
    budget: Budget,
    supplied: set[str] | frozenset[str] = frozenset(),
    prepared: dict[int, resources.Prepared] | None = None,
    targets: LocalTargets | None = None,
) -> bundle_json.Entry:
    """Run one entry; `targets`: what the local references of a transaction's writes may name
    (a batch entry's are looked up on their own)."""
    targets = targets or resources.local_targets(ctx, session)
    if request.method == "DELETE":
        if request.resource_id:  # a conditional delete that matched nothing has none
            resources.delete_in(
                session, request.resource_type, request.resource_id, request.if_match
            )
        return bundle_json.Entry(None, extra={"response": {"status": "204 No Content"}})
    if request.method == "GET":
        return _get(ctx, session, request, base, budget)
    if request.method == "PATCH":
        if not request.resource_id:
            raise InvalidRequestError(
                "A PATCH entry needs Type/id in its url", expression="request.url"
            )
        current = resources.live(
            session.read(request.resource_type, request.resource_id),
            request.resource_type,
            request.resource_id,
        )
        patched = apply_patch(fhir_json.loads(current.data), request.patch, ctx.limits)
        stored, _ = resources.update_in(
            ctx, session, patched, request.if_match, method="PATCH", targets=targets
        )
        return _written(stored, base, 200, minimal)
    assert request.resource is not None
    if request.method == "POST":
        if request.if_none_exist:  # matched an existing resource: nothing is created
            existing = session.read(request.resource_type, request.resource_id or "")
            assert existing is not None
            return _written(existing, base, 200, minimal)
        ready = (prepared or {}).get(request.index)
        if ready is None:
            resource = {**request.resource, "id": request.resource_id}
            derive = f"{request.resource_type}/{request.resource_id}" not in supplied
            ready = resources.prepare(ctx, resource, derive, ctx.plain_body)
        stored = resources.commit(session, ready, "POST", True, targets)
        return _written(stored, base, 201, minimal)
    body_id = request.resource.get("id")
    if body_id and body_id != request.resource_id:
        raise InvalidRequestError(
            f"id '{body_id}' does not match the request url",
            expression=f"{request.resource_type}.id",
        )
    resource = {**request.resource, "id": request.resource_id}
    stored, created = resources.update_in(ctx, session, resource, request.if_match, targets=targets)
    return _written(stored, base, 201 if created else 200, minimal)


def _get_budget(ctx: ServiceContext) -> Budget:
    return Budget(ctx.limits.max_bundle_get_results, "The Bundle's GET entries")


def _get(
    ctx: ServiceContext, session: StoreSession, request: _Request, base: str, budget: Budget
) -> bundle_json.Entry:
    if not request.resource_id:  # a search: its searchset Bundle is the entry's resource
        params = parse_qsl(request.query or "", keep_blank_values=True)
        where = f"Bundle.entry[{request.index}].request.url"
        found = search.search_in(ctx, session, base, request.resource_type, params, budget, where)
        return bundle_json.Entry(None, found, extra={"response": {"status": "200 OK"}})
    budget.spend(1, f"Bundle.entry[{request.index}].request.url")
    if request.version is not None:
        stored = resources.vread_in(
            session, request.resource_type, request.resource_id, request.version
        )
    else:
        stored = resources.live(
            session.read(request.resource_type, request.resource_id),
            request.resource_type,
            request.resource_id,
        )
    return _written(stored, base, 200, False)


def _written(stored: StoredResource, base: str, status: int, minimal: bool) -> bundle_json.Entry:
    url = f"{stored.resource_type}/{stored.id}"
    response = {
        "status": _STATUS_TEXT[status],
        "etag": f'W/"{stored.version_id}"',
        "lastModified": stored.last_updated,
    }
    if status == 201:
        response["location"] = f"{url}/_history/{stored.version_id}"
    return bundle_json.Entry(
        f"{base}/{url}", None if minimal else stored.data, extra={"response": response}
    )


def _locate(issues: list[Issue], index: int) -> list[Issue]:
    """Prefix each issue's path with the entry it came from: the client must know which one."""
    where = f"Bundle.entry[{index}]"
    located = []
    for issue in issues:
        expression = issue.expression
        if expression and expression.startswith("Bundle.entry"):
            pass
        elif expression and expression[:1].isupper():
            _, dot, rest = expression.partition(".")
            expression = f"{where}.resource{dot}{rest}"
        elif expression and expression.startswith("["):  # a JSON Patch operation's index
            expression = f"{where}.resource.data{expression}"
        else:
            expression = f"{where}.{expression}" if expression else where
        located.append(Issue(issue.severity, issue.code, issue.diagnostics, expression))
    return located
