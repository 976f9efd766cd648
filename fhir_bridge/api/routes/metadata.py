"""GET /metadata: the CapabilityStatement of this server."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fhir_bridge.api.deps import base_url
from fhir_bridge.api.responses import FHIRResponse
from fhir_bridge.services.capability import smart_security

router = APIRouter()


@router.get("/metadata")
async def metadata(request: Request, base: Annotated[str, Depends(base_url)]) -> Response:
    statement = dict(request.app.state.capability)
    statement["implementation"] = {**statement["implementation"], "url": base}
    if request.app.state.settings.auth_enabled:
        rest = dict(statement["rest"][0])
        rest["security"] = smart_security(f"{base}/auth/token")
        statement["rest"] = [rest, *statement["rest"][1:]]
    return FHIRResponse(orjson.dumps(statement))
