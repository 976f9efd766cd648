"""Who may call what: the bearer token of every request (AuthMiddleware) and one access rule
per route (RULES, checked by `authorize`, a dependency of every route).

create_app() refuses to start when a route has no rule, and a test walks the route table, so
a new route cannot escape. A rule is decided on the route's path template and the request's
path parameters, before any body is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.deps import fhir_base
from fhir_bridge.api.responses import outcome_response
from fhir_bridge.domain.roles import role_reaches
from fhir_bridge.domain.scopes import grants
from fhir_bridge.errors import AuthenticationError, ForbiddenError
from fhir_bridge.services import audit, export, tokens
from fhir_bridge.services.tokens import Principal

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]

# Search parameters that reach other resources than the ones searched: only a role that may
# read every type uses them (the others could reach a participant's record through them)
_REACHING = ("_include", "_revinclude", "_has", "_contained")


@dataclass(frozen=True)
class Rule:
    """Who may call one route. `roles`: the roles allowed at all; `action` (a letter of
    'cruds'): the route reads or writes resources of the type in its path (or `resource_type`),
    which the token's scopes and the role must grant; `interaction`: its name in the audit
    trail (a FHIR restful-interaction code)."""

    interaction: str
    roles: frozenset[str] = frozenset()
    action: str | None = None
    resource_type: str | None = None
    public: bool = False
    job: bool = False  # the route reads an export job: only the client that asked for it
    bulk_files: bool = False  # its `name` is a Bulk Data file, named by its resource type

    def check(self, principal: Principal, request: Request) -> None:
        if self.roles and principal.role not in self.roles:
            raise ForbiddenError(f"A {principal.role} client may not call {self.interaction}")
        if self.action is not None:
            resource_type = self.resource_type or request.path_params.get("resource_type", "")
            for action in self.action:
                if not role_reaches(principal.role, resource_type, action):
                    raise ForbiddenError(
                        f"A {principal.role} client may not {_VERBS[action]} {resource_type}"
                    )
                if not grants(list(principal.scopes), resource_type, action):
                    raise ForbiddenError(
                        f"The token's scopes do not allow {_VERBS[action]} {resource_type}"
                    )
            if principal.role != "ehr":
                _refuse_reaching(request)
        if self.job:
            job_id = request.path_params.get("job_id", "")
            ctx = request.app.state.context
            owner = export.job_client(ctx, job_id)
            if owner is not None and owner != principal.client_id:
                raise ForbiddenError(f"Export job {job_id} was asked for by another client")
            file_type = self.file_type(request)
            if file_type is not None and not grants(list(principal.scopes), file_type, "r"):
                raise ForbiddenError(f"The token's scopes do not allow reading {file_type}")

    def file_type(self, request: Request) -> str | None:
        """The resource type of a Bulk Data output file (`{type}-{n}.ndjson`)."""
        name = request.path_params.get("name")
        if name is None or not self.bulk_files:
            return None
        return str(name).partition("-")[0]


_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
PUBLIC = Rule("capabilities", public=True)
ANY = frozenset({"ehr", "researcher", "validator", "admin"})
RESEARCH = frozenset({"researcher"})
EXPORTERS = frozenset({"ehr", "researcher"})  # an EHR exports its data as stored


def _data(interaction: str, action: str, resource_type: str | None = None) -> Rule:
    return Rule(interaction, ANY, action, resource_type)


def _research(interaction: str, job: bool = False) -> Rule:
    return Rule(interaction, RESEARCH, job=job)


def _bulk(job: bool = False, bulk_files: bool = False) -> Rule:
    return Rule("operation", EXPORTERS, job=job, bulk_files=bulk_files)


RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/metadata"): PUBLIC,
    ("GET", "/.well-known/smart-configuration"): PUBLIC,
    ("POST", "/auth/token"): Rule("login", public=True),
    # Bulk Data: an EHR's as stored, a researcher's through the research view; view runs and
    # exports and the outcome report: the research view
    ("GET", "/$export"): _bulk(),
    ("POST", "/$export"): _bulk(),
    ("GET", "/Patient/$export"): _bulk(),
    ("POST", "/Patient/$export"): _bulk(),
    ("GET", "/Group/{group_id}/$export"): _bulk(),
    ("POST", "/Group/{group_id}/$export"): _bulk(),
    ("GET", "/$export-status/{job_id}"): _bulk(job=True),
    ("DELETE", "/$export-status/{job_id}"): _bulk(job=True),
    ("GET", "/$export-file/{job_id}/{name}"): _bulk(job=True, bulk_files=True),
    ("GET", "/$viewdefinition-run"): _research("operation"),
    ("POST", "/$viewdefinition-run"): _research("operation"),
    ("GET", "/ViewDefinition/{view_id}/$viewdefinition-run"): _research("operation"),
    ("POST", "/ViewDefinition/{view_id}/$viewdefinition-run"): _research("operation"),
    ("POST", "/$viewdefinition-export"): _research("operation"),
    ("GET", "/$viewdefinition-export-status/{job_id}"): _research("operation", job=True),
    ("DELETE", "/$viewdefinition-export-status/{job_id}"): _research("operation", job=True),
    ("GET", "/$viewdefinition-export-file/{job_id}/{name}"): _research("operation", job=True),
    ("GET", "/ResearchStudy/{study_id}/$outcomes"): _research("operation"),
    # ViewDefinitions (stored as this server's own type)
    ("POST", "/ViewDefinition"): _data("create", "c", "ViewDefinition"),
    ("GET", "/ViewDefinition"): _data("search-type", "s", "ViewDefinition"),
    ("GET", "/ViewDefinition/{resource_id}"): _data("read", "r", "ViewDefinition"),
    ("PUT", "/ViewDefinition/{resource_id}"): _data("update", "u", "ViewDefinition"),
    ("DELETE", "/ViewDefinition/{resource_id}"): _data("delete", "d", "ViewDefinition"),
    ("GET", "/ViewDefinition/{resource_id}/_history/{version_id}"): _data(
        "vread", "r", "ViewDefinition"
    ),
    ("GET", "/ViewDefinition/{resource_id}/_history"): _data(
        "history-instance", "r", "ViewDefinition"
    ),
    # whole-server history and Bundles reach every type: the EHR role only
    ("GET", "/_history"): Rule("history-system", frozenset({"ehr"}), "rs", "*"),
    ("POST", ""): Rule("transaction", frozenset({"ehr"})),
    # $validate reads no stored data but the one resource of an instance-level call
    ("POST", "/{resource_type}/$validate"): Rule("operation", frozenset({"ehr", "validator"})),
    ("POST", "/{resource_type}/{resource_id}/$validate"): Rule(
        "operation", frozenset({"ehr", "validator"})
    ),
    # the REST interactions, by the type in the path
    ("POST", "/{resource_type}"): _data("create", "c"),
    ("GET", "/{resource_type}"): _data("search-type", "s"),
    ("POST", "/{resource_type}/_search"): _data("search-type", "s"),
    ("GET", "/{resource_type}/_history"): _data("history-type", "s"),
    ("GET", "/{resource_type}/{resource_id}"): _data("read", "r"),
    ("PUT", "/{resource_type}/{resource_id}"): _data("update", "u"),
    ("PUT", "/{resource_type}"): _data("update", "scu"),
    ("PATCH", "/{resource_type}/{resource_id}"): _data("patch", "u"),
    ("DELETE", "/{resource_type}/{resource_id}"): _data("delete", "d"),
    ("DELETE", "/{resource_type}"): _data("delete", "sd"),
    ("GET", "/{resource_type}/{resource_id}/_history/{version_id}"): _data("vread", "r"),
    ("GET", "/{resource_type}/{resource_id}/_history"): _data("history-instance", "r"),
}


def check_rules(routers: list[APIRouter]) -> None:
    """Every route has a rule, and every rule a route: a route without one is a start-up
    error. Routes are named by their path below the FHIR base, as the routers declare them."""
    routes = {
        (m, r.path)
        for router in routers
        for r in router.routes
        if isinstance(r, APIRoute)
        for m in r.methods or ()
    }
    missing = sorted(routes - RULES.keys())
    if missing:
        raise RuntimeError(f"routes without an access rule: {missing}")
    unused = sorted(RULES.keys() - routes)
    if unused:
        raise RuntimeError(f"access rules without a route: {unused}")


def rule_of(request: Request) -> Rule:
    route = request.scope.get("route")
    method = "GET" if request.method == "HEAD" else request.method
    rule = RULES.get((method, getattr(route, "path", "")))
    if rule is None:  # check_rules makes this unreachable
        raise ForbiddenError("This route has no access rule")
    return rule


async def authorize(request: Request) -> None:
    """The rule of the route, on the request's principal (a dependency of every route)."""
    rule = rule_of(request)
    record = audit.CURRENT.get()
    if record is not None:
        record.interaction = rule.interaction
        record.resource_type = rule.resource_type or request.path_params.get("resource_type")
        record.resource_id = request.path_params.get("resource_id")
    if rule.public or not request.app.state.settings.auth_enabled:
        return
    principal = principal_of(request)
    if principal is None:
        raise AuthenticationError("This request needs a bearer token (SMART Backend Services)")
    if rule.job:
        await run_in_threadpool(rule.check, principal, request)
    else:
        rule.check(principal, request)


def principal_of(request: Request) -> Principal | None:
    """The authenticated client of a request; None while authentication is off."""
    found: Principal | None = request.scope.get("state", {}).get("principal")
    return found


def readable_types(principal: Principal, types: list[str], *, explicit: bool) -> list[str]:
    """The types of an export the client may read: all of an explicit `_type` or a 403; of
    the default ones, those it may read. The scopes decide, and the role too unless the export
    goes through the research view (a researcher's), whose policy decides what it releases."""
    scopes = list(principal.scopes)
    by_role = principal.role != "researcher"
    allowed = [
        t
        for t in types
        if grants(scopes, t, "r") and (not by_role or role_reaches(principal.role, t, "r"))
    ]
    if explicit and len(allowed) < len(types):
        refused = ", ".join(t for t in types if t not in allowed)
        raise ForbiddenError(f"The token's scopes do not allow reading {refused}")
    if not allowed:
        raise ForbiddenError("The token's scopes allow reading none of the exported types")
    return allowed


def _refuse_reaching(request: Request) -> None:
    for name in request.query_params:
        base = name.split(":")[0]
        if base in _REACHING or base.startswith("_has") or "." in base:
            raise ForbiddenError(
                f"Search parameter '{name}' reaches other resources; this role may not use it",
                expression=name,
            )


class AuthMiddleware:
    """Authenticates the bearer token of each request (state `principal`, `client_id`) and
    writes each request's AuditEvent unless a write recorded it in its own transaction."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        if not state.settings.auth_enabled:
            await self.app(scope, receive, send)
            return
        record = audit.RequestAudit(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            address=(scope.get("client") or (None,))[0],
            base=fhir_base(Request(scope)),
        )
        token = audit.CURRENT.set(record)
        status = [500]

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refused = await self._authenticate(scope, state, record)
            if refused is not None:
                await refused(scope, receive, sending)
                return
            if scope["path"].startswith("/fhir/AuditEvent"):
                await run_in_threadpool(state.audit_writer.flush)  # the trail is current
            await self.app(scope, receive, sending)
        finally:
            audit.CURRENT.reset(token)
            if not record.recorded:
                state.audit_writer.add(audit.audit_event(record, status[0]))

    async def _authenticate(
        self, scope: Scope, state: Any, record: audit.RequestAudit
    ) -> Any | None:
        """Sets the principal of a bearer token; a response refusing a bad token, or None."""
        header = dict(scope["headers"]).get(b"authorization")
        if header is None:
            return None
        kind, _, token = header.decode("latin-1").partition(" ")
        try:
            if kind.lower() != "bearer" or not token.strip():
                raise AuthenticationError("The Authorization header must be 'Bearer <token>'")
            principal = await run_in_threadpool(
                tokens.authenticate, state.context, state.tokens, token.strip()
            )
        except AuthenticationError as exc:
            response = outcome_response(exc.issues, 401)
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        scope.setdefault("state", {})
        scope["state"]["principal"] = principal
        scope["state"]["client_id"] = principal.client_id
        record.principal = principal
        return None
