"""GET /metadata: the CapabilityStatement of this server."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_bridge.api.deps import base_url
from fhir_bridge.api.responses import FHIRResponse

router = APIRouter()


@router.get("/metadata")
def metadata(request: Request) -> Response:
    statement = dict(request.app.state.capability)
    statement["implementation"] = {**statement["implementation"], "url": base_url(request)}
    return FHIRResponse(orjson.dumps(statement))
