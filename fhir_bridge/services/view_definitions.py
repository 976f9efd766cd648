"""SQL on FHIR v2 ViewDefinitions as a resource type of this server: create, read, vread,
update, delete, history and search, and the look-up of a `viewReference`.

R4 has no ViewDefinition type; the IG's R4 mode runs views at the system level
(https://sql-on-fhir.org/ig/latest/operations.html). This server still serves them at
`[base]/ViewDefinition` so that views can be kept, versioned and run by reference. They are
stored in the `resources` table as resources of type "ViewDefinition": one table, one
versioning (history, vread, deletion markers) and one backup for every node, nothing kept in
process memory. They bypass the R4 write path (validator, rules, derivations, which know R4
types only): `ViewDefinition.parse` is their validation. The R4 search index knows none of
their elements, so search reads them all and matches in memory; there are few, and at most
MAX_STORED may be live at once, which bounds every search.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_bridge.domain.fhir import parse_uint
from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import (
    FHIRBridgeError,
    InvalidRequestError,
    PreconditionFailedError,
    ResourceNotFoundError,
    UnprocessableResourceError,
)
from fhir_bridge.services import bundle_json
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.resources import (
    check_id,
    check_version,
    delete_in,
    known_id,
    new_id,
)
from fhir_bridge.services.resources import read as read_resource
from fhir_bridge.services.resources import vread as vread_resource
from fhir_bridge.store import exports
from fhir_bridge.store.base import StoredResource, StoreSession
from fhir_bridge.store.exports import Selection
from fhir_bridge.views import ViewDefinition

TYPE = "ViewDefinition"
MAX_STORED = 1000  # live ViewDefinitions at once; a search reads them all
SEARCH_PARAMETERS = {"name": "string", "url": "uri", "status": "token", "resource": "token"}
_RESULT_PARAMETERS = ("_count", "_offset")
_LATEST = "9999"  # an upper bound of every stored instant: read what is live now


def checked(resource: Any, location: str = TYPE) -> ViewDefinition:
    """The compiled view of a ViewDefinition's JSON; an invalid one is a 422 naming the element
    (`location` replaces the leading `ViewDefinition` of the expression, e.g. for a parameter)."""
    try:
        return ViewDefinition.parse(resource)
    except InvalidRequestError as error:
        issues = [relocated(issue, location) for issue in error.issues]
        raise UnprocessableResourceError(issues=issues) from error


def relocated(issue: Issue, location: str) -> Issue:
    """The issue with its leading `ViewDefinition` put as `location`."""
    if location == TYPE or not issue.expression or not issue.expression.startswith(TYPE):
        return issue
    expression = location + issue.expression[len(TYPE) :]
    diagnostics = issue.diagnostics.replace(issue.expression, expression, 1)
    return Issue(issue.severity, issue.code, diagnostics, expression)


def create(ctx: ServiceContext, resource: dict[str, Any]) -> StoredResource:
    """https://hl7.org/fhir/R4/http.html#create, the server assigning the id."""
    resource = {**resource, "id": new_id()}
    checked(resource)
    with ctx.store.session(write=True) as session:
        _check_room(session)
        return session.put(resource, "POST", new=True)


def update(
    ctx: ServiceContext, resource: dict[str, Any], if_match: str | None = None
) -> tuple[StoredResource, bool]:
    """https://hl7.org/fhir/R4/http.html#update, as create when the id is new."""
    resource_id = resource["id"]
    check_id(resource_id, f"{TYPE}.id")
    checked(resource)
    with ctx.store.session(write=True) as session:
        current = session.read(TYPE, resource_id)
        check_version(current, if_match, TYPE, resource_id)
        created = current is None or current.deleted
        if created:
            _check_room(session)
        return session.put(resource, "PUT"), created


def read(ctx: ServiceContext, resource_id: str) -> StoredResource:
    return read_resource(ctx, TYPE, resource_id)


def vread(ctx: ServiceContext, resource_id: str, version: str) -> StoredResource:
    return vread_resource(ctx, TYPE, resource_id, version)


def delete(
    ctx: ServiceContext, resource_id: str, if_match: str | None = None
) -> StoredResource | None:
    known_id(TYPE, resource_id)
    with ctx.store.session(write=True) as session:
        return delete_in(session, TYPE, resource_id, if_match)


def _check_room(session: StoreSession) -> None:
    if len(_stored(session)) >= MAX_STORED:
        raise UnprocessableResourceError(
            f"This server keeps at most {MAX_STORED} ViewDefinitions; delete one first",
            code="business-rule",
        )


def _stored(session: StoreSession) -> list[tuple[str, bytes]]:
    """The live ViewDefinitions (id, JSON) in write order; at most MAX_STORED + 1."""
    rows = exports.read_batch(session, Selection(TYPE, until=_LATEST), -1, MAX_STORED + 1)
    return [(resource_id, data) for _, resource_id, data, _ in rows]


def search(
    ctx: ServiceContext, base: str, params: Sequence[tuple[str, str]], strict: bool = False
) -> bytes:
    """A searchset Bundle of the ViewDefinitions matching `name` (string: starts with, any
    case; `:exact`, `:contains`), `url` (uri), `status` and `resource` (token) and `_id`,
    each also with `:missing`; commas OR values, repeated parameters AND. Paged by `_count`
    and `_offset`. https://hl7.org/fhir/R4/search.html"""
    tests: list[tuple[str, str, list[str]]] = []
    used: list[tuple[str, str]] = []
    unknown: list[str] = []
    for name, value in params:
        code, _, modifier = name.partition(":")
        if name in _RESULT_PARAMETERS or value == "":
            continue
        if not _known(code, modifier, value):
            unknown.append(name)
            continue
        tests.append((code, modifier, value.split(",")))
        used.append((name, value))
    if unknown and strict:
        names = ", ".join(sorted(set(unknown)))
        raise InvalidRequestError(
            f"Unknown or unsupported search parameter(s): {names}",
            code="not-supported",
            expression=names,
        )
    count = min(_number(params, "_count", ctx.default_page_size), ctx.max_page_size)
    offset = _number(params, "_offset", 0)
    with ctx.store.session() as session:
        stored = _stored(session)
    matches = []
    for resource_id, data in stored:
        resource = orjson.loads(data)
        if all(_matches(resource, code, modifier, values) for code, modifier, values in tests):
            matches.append((resource_id, data))
    page = matches[offset : offset + count] if count else []
    path = f"{base}/{TYPE}"
    paging = [("_count", str(count))]
    links = {"self": _url(path, [*used, *paging, *_offset(offset)])}
    if count and offset + count < len(matches):
        links["next"] = _url(path, [*used, *paging, *_offset(offset + count)])
    entries = [
        bundle_json.Entry(f"{path}/{i}", data, extra={"search": {"mode": "match"}})
        for i, data in page
    ]
    return bundle_json.build("searchset", entries, total=len(matches), links=links)


def _known(code: str, modifier: str, value: str) -> bool:
    if modifier == "missing":
        return value in ("true", "false") and (code == "_id" or code in SEARCH_PARAMETERS)
    if code == "_id":
        return not modifier
    kind = SEARCH_PARAMETERS.get(code)
    if kind == "string":
        return modifier in ("", "exact", "contains")
    return kind is not None and not modifier


def _matches(resource: dict[str, Any], code: str, modifier: str, values: list[str]) -> bool:
    found = resource.get("id" if code == "_id" else code)
    if modifier == "missing":
        return (found is None) == (values == ["true"])
    if not isinstance(found, str):
        return False
    if code == "name" and modifier == "":
        return any(found.lower().startswith(v.lower()) for v in values)
    if code == "name" and modifier == "contains":
        return any(v.lower() in found.lower() for v in values)
    if SEARCH_PARAMETERS.get(code) == "token":
        values = [v.rpartition("|")[2] for v in values]  # the view's codes have no system
    return found in values


def _number(params: Sequence[tuple[str, str]], name: str, default: int) -> int:
    given = [value for key, value in params if key == name]
    if not given:
        return default
    number = parse_uint(given[-1])
    if number is None:
        raise InvalidRequestError(
            f"{name} must be a non-negative integer, not '{given[-1]}'", expression=name
        )
    return number


def _offset(offset: int) -> list[tuple[str, str]]:
    return [("_offset", str(offset))] if offset else []


def _url(path: str, params: list[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def resolve(ctx: ServiceContext, base: str, reference: str, location: str) -> dict[str, Any]:
    """The ViewDefinition a `viewReference` names: `ViewDefinition/[id]`, this server's
    absolute URL of one, or the canonical `url` of a stored one (`url|version` picks the
    version). https://sql-on-fhir.org/ig/latest/operations.html"""
    local = reference.removeprefix(f"{base}/")
    kind, _, resource_id = local.partition("/")
    if kind == TYPE and resource_id and "/" not in resource_id:
        try:
            return dict(orjson.loads(read(ctx, resource_id).data))
        except FHIRBridgeError as error:
            raise ResourceNotFoundError(
                f"{location}: {reference} is not a ViewDefinition of this server",
                expression=location,
            ) from error
    url, _, version = reference.partition("|")
    with ctx.store.session() as session:
        stored = [orjson.loads(data) for _, data in _stored(session)]
    found = [
        view
        for view in stored
        if view.get("url") == url and (not version or view.get("version") == version)
    ]
    if not found:
        raise ResourceNotFoundError(
            f"{location}: no ViewDefinition of this server has the reference or url {reference}",
            expression=location,
        )
    if len(found) > 1:
        raise PreconditionFailedError(
            f"{location}: {len(found)} ViewDefinitions have the url {reference}; "
            "name one by ViewDefinition/[id] or url|version",
            code="multiple-matches",
            expression=location,
        )
    return dict(found[0])
