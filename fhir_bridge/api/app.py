"""create_app(): the FastAPI application, its store and checks built in the lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_bridge import __version__
from fhir_bridge.api import handlers, hardening
from fhir_bridge.api.auth import AuthMiddleware, authorize, check_rules
from fhir_bridge.api.deps import negotiate
from fhir_bridge.api.responses import FHIRResponse
from fhir_bridge.api.routes import (
    export,
    metadata,
    operations,
    resources,
    smart,
    system,
    view_definitions,
    views,
)
from fhir_bridge.config import Settings, get_settings
from fhir_bridge.pseudonym import ResearchView, load_policy
from fhir_bridge.services import audit, conformance, demo, trial_rules
from fhir_bridge.services.capability import (
    VALIDATE_OPERATION,
    capability_statement,
    searchable_parameters,
)
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.export_runner import ExportSettings, Worker
from fhir_bridge.services.tokens import Tokens
from fhir_bridge.store.exports import server_secret
from fhir_bridge.store.indexing import extract_index
from fhir_bridge.store.sql import SQLStore

log = logging.getLogger("fhir_bridge")

# every error is an OperationOutcome (https://hl7.org/fhir/R4/operationoutcome.html)
OUTCOME_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "OperationOutcome naming what was refused", "model": None},
    "5XX": {"description": "OperationOutcome with a request id", "model": None},
}


# Routes below the FHIR base, in the order they are matched (literal paths first). The export
# routes come before the resource routes, which would read `Patient/$export` as a Patient's
# id; ViewDefinition is not an R4 type: its routes come before the generic ones, which refuse
# it. OWN_ROUTERS answer their own media types, FHIR_ROUTERS FHIR JSON only.
OWN_ROUTERS = [smart.router, export.router, views.router]
FHIR_ROUTERS = [
    metadata.router,
    system.router,
    view_definitions.router,
    operations.router,
    resources.router,
]
ROUTERS = OWN_ROUTERS + FHIR_ROUTERS


def tune_collector() -> None:
    """Garbage collection for serving, once everything is loaded. What is loaded by now lives as
    long as the server: the collector need not scan it again on every full collection (a write
    allocates thousands of objects). Requests allocate acyclic JSON by the hundred thousand: a
    young generation of 50,000 objects instead of 700 spares most collections of objects still
    in use (a transaction of 500 MADRS scores: 1,620k -> 1,587k instructions per resource)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    trial = trial_rules.load_trial()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = SQLStore(
            settings.database_url,
            extract_index,
            statement_timeout=settings.statement_timeout_seconds,
        )
        context = trial_rules.trial_context(
            store,
            trial,
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
            max_bundle_entries=settings.max_bundle_entries,
            limits=settings.limits(),
            check_references=settings.check_references,
        )
        conformance.publish(context, trial.conformance + trial.study)
        if settings.demo:
            demo.load_examples(context)
            demo.load_views(context)
        app.state.context = context
        app.state.research_view = research_view(settings, store)
        app.state.tokens = Tokens.of(context, settings.token_lifetime_seconds)
        app.state.audit_writer = audit.AuditWriter(context)
        app.state.audit_writer.start()
        if settings.auth_enabled:
            store.commit_hook = audit.record_write
            context.transforms.append(audit.SiteSource())
            if settings.demo:
                _demo_clients(context, settings)
        else:
            log.warning(
                "AUTHENTICATION IS DISABLED (FHIR_BRIDGE_AUTH=disabled): anyone who can reach "
                "this port reads and writes every participant's data"
            )
        worker = Worker(context, _export_settings(settings), app.state.research_view)
        worker.start()
        tune_collector()
        yield
        worker.stop()
        app.state.audit_writer.stop()
        store.close()

    app = FastAPI(
        title="fhir-bridge",
        version=__version__,
        description="FHIR R4 research interoperability service for psychiatric clinical trials",
        lifespan=lifespan,
        dependencies=[Depends(authorize)],  # api/auth.py: one rule per route
        # no HTML pages that load scripts from a CDN into this origin; openapi.json stays
        docs_url=None,
        redoc_url=None,
    )
    app.router.redirect_slashes = False  # served by TrailingSlash instead: no 307
    app.add_middleware(TrailingSlash)
    app.state.settings = settings
    app.state.capability = capability_statement(
        "",
        searchable_parameters(),
        type_operations=[VALIDATE_OPERATION],
        profiles=trial.profiles_by_type(),
    )
    handlers.install(app)
    # from the outside in: host check and security headers, authentication, rate limit
    hardening.install_rate_limit(app, settings)
    app.add_middleware(AuthMiddleware)
    hardening.install(app, settings)
    for router in OWN_ROUTERS:
        app.include_router(router, prefix="/fhir", responses=OUTCOME_RESPONSES)
    for router in FHIR_ROUTERS:
        app.include_router(
            router,
            prefix="/fhir",
            dependencies=[Depends(negotiate)],
            default_response_class=FHIRResponse,
            responses=OUTCOME_RESPONSES,
        )
    check_rules(ROUTERS)
    return app


def _demo_clients(ctx: ServiceContext, settings: Settings) -> None:
    """Register the demo clients and say how to get a token with each."""
    base = settings.base_url or f"http://{settings.host}:{settings.port}/fhir"
    for role, client_id, key_file in demo.register_clients(ctx, Path(settings.demo_keys_dir)):
        log.warning(
            "demo %s client %s: TOKEN=$(fhir-bridge token --server %s --client %s --key %s)",
            role,
            client_id,
            base,
            client_id,
            key_file,
        )


class TrailingSlash:
    """Serves `[base]/` as `[base]` and `[base]/Patient/` as `[base]/Patient`: the router's
    307 redirect to the path without the slash is not followed for a POST by most clients."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.endswith(b"/"):
                scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def research_view(settings: Settings, store: SQLStore) -> ResearchView:
    """The research view of this server: the policy in mappings/ and the configured pseudonym
    key, or else the one this server made and keeps in its database."""
    if settings.pseudonym_key is not None:
        key = settings.pseudonym_key.get_secret_value().encode()
    else:
        with store.session(write=True) as session:
            key = server_secret(session, "pseudonym_key")
    return ResearchView(load_policy(), key)


def _export_settings(settings: Settings) -> ExportSettings:
    return ExportSettings(
        export_dir=Path(settings.export_dir),
        ttl_seconds=settings.export_ttl_seconds,
        file_resources=settings.export_file_resources,
        stale_seconds=settings.export_stale_seconds,
    )
