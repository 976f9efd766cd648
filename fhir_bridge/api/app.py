"""create_app(): the FastAPI application, its store and checks built in the lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI

from fhir_bridge import __version__
from fhir_bridge.api import handlers, hardening
from fhir_bridge.api.deps import negotiate
from fhir_bridge.api.responses import FHIRResponse
from fhir_bridge.api.routes import (
    export,
    metadata,
    operations,
    resources,
    system,
    view_definitions,
    views,
)
from fhir_bridge.config import Settings, get_settings
from fhir_bridge.pseudonym import ResearchView, load_policy
from fhir_bridge.services import conformance, demo, trial_rules
from fhir_bridge.services.capability import (
    VALIDATE_OPERATION,
    capability_statement,
    searchable_parameters,
)
from fhir_bridge.services.export_runner import ExportSettings, Worker
from fhir_bridge.store.exports import server_secret
from fhir_bridge.store.indexing import extract_index
from fhir_bridge.store.sql import SQLStore

# every error is an OperationOutcome (https://hl7.org/fhir/R4/operationoutcome.html)
OUTCOME_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"description": "OperationOutcome naming what was refused", "model": None},
    "5XX": {"description": "OperationOutcome with a request id", "model": None},
}


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
        store = SQLStore(settings.database_url, extract_index)
        context = trial_rules.trial_context(
            store,
            trial,
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
            max_bundle_entries=settings.max_bundle_entries,
        )
        conformance.publish(context, trial.conformance + trial.study)
        if settings.demo:
            demo.load_examples(context)
            demo.load_views(context)
        app.state.context = context
        app.state.research_view = research_view(settings, store)
        worker = Worker(context, _export_settings(settings), app.state.research_view)
        worker.start()
        tune_collector()
        yield
        worker.stop()
        store.close()

    app = FastAPI(
        title="fhir-bridge",
        version=__version__,
        description="FHIR R4 research interoperability service for psychiatric clinical trials",
        lifespan=lifespan,
        # no HTML pages that load scripts from a CDN into this origin; openapi.json stays
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.capability = capability_statement(
        "",
        searchable_parameters(),
        type_operations=[VALIDATE_OPERATION],
        profiles=trial.profiles_by_type(),
    )
    handlers.install(app)
    hardening.install_rate_limit(app, settings)
    hardening.install(app, settings)
    # before the resource routes, which would read `Patient/$export` as a Patient's id
    app.include_router(export.router, prefix="/fhir", responses=OUTCOME_RESPONSES)
    app.include_router(views.router, prefix="/fhir", responses=OUTCOME_RESPONSES)
    # ViewDefinition is not an R4 type: its routes come before the generic ones, which refuse it
    modules = (metadata, system, view_definitions, operations, resources)
    for module in modules:  # order matters: literal paths first
        app.include_router(
            module.router,
            prefix="/fhir",
            dependencies=[Depends(negotiate)],
            default_response_class=FHIRResponse,
            responses=OUTCOME_RESPONSES,
        )
    return app


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
