"""System-level routes: whole-server history (and the Bundle endpoint)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from starlette.responses import Response

from fhir_bridge.api.deps import RESOURCE_BODY, base_url, context, history_query, json_bytes
from fhir_bridge.api.handlers import status_for
from fhir_bridge.api.responses import FHIRResponse, prefer_return
from fhir_bridge.services import bundles, history
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.history import HistoryQuery

router = APIRouter()


@router.get("/_history")
def system_history(
    ctx: Annotated[ServiceContext, Depends(context)],
    base: Annotated[str, Depends(base_url)],
    query: Annotated[HistoryQuery, Depends(history_query)],
) -> Response:
    return FHIRResponse(history.history(ctx, base, None, None, query))


@router.post("", openapi_extra=RESOURCE_BODY)
def transaction_or_batch(
    body: Annotated[bytes, Depends(json_bytes)],
    ctx: Annotated[ServiceContext, Depends(context)],
    base: Annotated[str, Depends(base_url)],
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    minimal = prefer_return(prefer) == "minimal"
    return FHIRResponse(bundles.process(ctx, body, base, status_for, minimal))
