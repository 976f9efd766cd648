"""Operations: $validate at type and instance level."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from starlette.responses import Response

from fhir_bridge.api.deps import RESOURCE_BODY, context, json_body
from fhir_bridge.api.responses import FHIRResponse, outcome
from fhir_bridge.services import conformance, resources
from fhir_bridge.services.context import ServiceContext

router = APIRouter()

Ctx = Annotated[ServiceContext, Depends(context)]
Body = Annotated[Any, Depends(json_body)]


@router.post("/{resource_type}/$validate", openapi_extra=RESOURCE_BODY)
def validate_type(resource_type: str, body: Body, ctx: Ctx) -> Response:
    if resource_type != "Bundle":  # Bundles are validated, not stored
        resources.check_type(resource_type)
    issues = conformance.validate(ctx, resource_type, body)
    return FHIRResponse(orjson.dumps(outcome(issues)))


@router.post("/{resource_type}/{resource_id}/$validate", openapi_extra=RESOURCE_BODY)
def validate_instance(resource_type: str, resource_id: str, body: Body, ctx: Ctx) -> Response:
    resources.check_type(resource_type)
    issues = conformance.validate(ctx, resource_type, body, resource_id)
    return FHIRResponse(orjson.dumps(outcome(issues)))
