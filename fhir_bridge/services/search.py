"""Type-level search: parse, run on the store, answer with a searchset Bundle.

https://hl7.org/fhir/R4/search.html — matches and _include/_revinclude resources carry
`search.mode`; paging links carry a keyset cursor so that pages stay stable under writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any
from urllib.parse import urlencode

from fhir_bridge.domain import fhir_json
from fhir_bridge.domain.cost import Budget
from fhir_bridge.domain.search import SearchRequest, parse_search
from fhir_bridge.errors import InvalidRequestError
from fhir_bridge.services import bundle_json
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.store import search as store_search
from fhir_bridge.store.base import StoreSession
from fhir_bridge.validation.definitions import base_elements, choice_names

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
_ALWAYS_KEPT = ("resourceType", "id", "meta")


def search(
    ctx: ServiceContext,
    base: str,
    resource_type: str,
    params: Sequence[tuple[str, str]],
    strict: bool = False,
) -> bytes:
    """A searchset Bundle for `GET /{type}?params` or `POST /{type}/_search`."""
    request = parse_search(resource_type, params, base, ctx.limits.max_search_criteria)
    if request.unknown and strict:
        names = ", ".join(sorted({name for name, _ in request.unknown}))
        raise InvalidRequestError(
            f"Unknown or unsupported search parameter(s): {names}",
            code="not-supported",
            expression=names,
        )
    with ctx.store.session() as session:
        return _searchset(ctx, session, base, request, params)


def search_in(
    ctx: ServiceContext,
    session: StoreSession,
    base: str,
    resource_type: str,
    params: Sequence[tuple[str, str]],
    budget: Budget,
    expression: str,
) -> bytes:
    """The same search inside an open session (a GET entry of a transaction or batch); it
    spends from `budget` the most resources it can return before it runs."""
    request = parse_search(resource_type, params, base, ctx.limits.max_search_criteria)
    budget.spend(_most_results(ctx, request), expression)
    return _searchset(ctx, session, base, request, params)


def _most_results(ctx: ServiceContext, request: SearchRequest) -> int:
    if request.summary == "count" or request.count == 0:
        return 1
    page = min(ctx.default_page_size if request.count is None else request.count, ctx.max_page_size)
    included = ctx.limits.max_include_results if request.includes or request.revincludes else 0
    return page + included


def _searchset(
    ctx: ServiceContext,
    session: StoreSession,
    base: str,
    request: SearchRequest,
    params: Sequence[tuple[str, str]],
) -> bytes:
    if request.summary == "true":
        raise InvalidRequestError(
            "_summary=true is not supported; use _elements",
            code="not-supported",
            expression="_summary",
        )
    ignored = {name for name, _ in request.unknown}
    used = [(n, v) for n, v in params if n not in ignored and n != "_cursor" and v != ""]
    page_url = f"{base}/{request.resource_type}"
    self_url = _url(page_url, used, request.cursor)
    if request.summary == "count" or request.count == 0:  # _count=0 is _summary=count
        total = store_search.count(session.execute, request, ctx.limits.max_search_parameters)
        return bundle_json.build("searchset", [], total=total, links={"self": self_url})
    result = store_search.run_search(
        session.execute,
        request,
        default_count=ctx.default_page_size,
        max_count=ctx.max_page_size,
        cursor_key=session.cursor_key,
        max_parameters=ctx.limits.max_search_parameters,
        max_included=ctx.limits.max_include_results,
    )
    links = {"self": self_url}
    if result.next_cursor:
        # the cursor already marks where the next page starts: _offset must not apply twice
        paged = [(n, v) for n, v in used if n != "_offset"]
        links["next"] = _url(page_url, paged, result.next_cursor)
    matches = [
        bundle_json.Entry(
            f"{base}/{rtype}/{rid}", _shape(data, request), extra={"search": {"mode": "match"}}
        )
        for rtype, rid, data in result.matches
    ]
    included = [  # _elements and _summary shape the matches only (search 3.1.1.5.9)
        bundle_json.Entry(f"{base}/{rtype}/{rid}", data, extra={"search": {"mode": "include"}})
        for rtype, rid, data in result.included
    ]
    entries = [*matches, *included]
    return bundle_json.build("searchset", entries, total=result.total, links=links)


@cache
def _mandatory(resource_type: str) -> frozenset[str]:
    """What shaping keeps of every resource: `resourceType`, `id`, `meta` and the top-level
    elements whose minimum cardinality is 1 or more (R4 search 3.1.1.5.9: "SHOULD")."""
    names = set(_ALWAYS_KEPT)
    for element in base_elements(resource_type) or []:
        path = element["p"]
        if path.count(".") == 1 and element.get("n", 0) >= 1:
            name = path.split(".", 1)[1]
            names.update(choice_names(name[:-3]) if name.endswith("[x]") else (name,))
    return frozenset(names)


def _url(path: str, params: list[tuple[str, str]], cursor: str | None) -> str:
    query = urlencode([*params, *([("_cursor", cursor)] if cursor else [])])
    return f"{path}?{query}" if query else path


def _shape(data: bytes, request: SearchRequest) -> bytes:
    """Apply _elements and _summary=data/text; untouched bytes otherwise (the common case)."""
    if request.elements:
        return shape_elements(data, request.elements)
    if request.summary not in ("data", "text"):
        return data
    resource: dict[str, Any] = fhir_json.loads(data)
    if request.summary == "data":
        resource.pop("text", None)
    else:  # text: the narrative and the mandatory top-level elements only
        mandatory = _mandatory(resource.get("resourceType", ""))
        resource = {k: v for k, v in resource.items() if k in mandatory or k == "text"}
    return _subsetted(resource)


def shape_elements(data: bytes, elements: list[str]) -> bytes:
    """The resource with the top-level `elements` and the mandatory ones only, tagged
    SUBSETTED (`_elements` of a search or a Bulk Data export)."""
    resource: dict[str, Any] = fhir_json.loads(data)
    mandatory = _mandatory(resource.get("resourceType", ""))
    keep = {n for e in elements for n in (e, *choice_names(e))} | mandatory
    return _subsetted({k: v for k, v in resource.items() if k in keep})


def _subsetted(resource: dict[str, Any]) -> bytes:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return fhir_json.dumps(resource)
