"""Operations: $validate at type and instance level; a study's $outcomes."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from fhir_bridge.api.deps import RESOURCE_BODY, context, json_body
from fhir_bridge.api.responses import FHIRResponse
from fhir_bridge.domain.issues import operation_outcome
from fhir_bridge.services import conformance, report, resources
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.trial_rules import load_trial

router = APIRouter()

Ctx = Annotated[ServiceContext, Depends(context)]
Body = Annotated[Any, Depends(json_body)]


async def _validate_args(
    profile: Annotated[list[str] | None, Query()] = None,
    mode: Annotated[str | None, Query()] = None,
) -> tuple[list[str], str | None]:
    """`profile` and `mode` may come in the URL as well as in a Parameters body."""
    return profile or [], mode


Args = Annotated[tuple[list[str], str | None], Depends(_validate_args)]


@router.post("/{resource_type}/$validate", openapi_extra=RESOURCE_BODY)
def validate_type(resource_type: str, body: Body, ctx: Ctx, args: Args) -> Response:
    if resource_type != "Bundle":  # Bundles are validated, not stored
        resources.check_type(resource_type)
    issues = conformance.validate(ctx, resource_type, body, None, *args)
    return FHIRResponse(orjson.dumps(operation_outcome(issues)))


@router.post("/{resource_type}/{resource_id}/$validate", openapi_extra=RESOURCE_BODY)
def validate_instance(
    resource_type: str, resource_id: str, body: Body, ctx: Ctx, args: Args
) -> Response:
    resources.check_type(resource_type)
    issues = conformance.validate(ctx, resource_type, body, resource_id, *args)
    return FHIRResponse(orjson.dumps(operation_outcome(issues)))


@router.get("/ResearchStudy/{study_id}/$outcomes")
def research_study_outcomes(study_id: str, request: Request, ctx: Ctx) -> Response:
    """The study's outcome table from the research view of its cohort, as Parameters."""
    state = request.app.state
    threshold = state.settings.remission_threshold_madrs
    body = report.study_outcomes(
        ctx, state.research_view, study_id, load_trial().mappings, threshold
    )
    return FHIRResponse(orjson.dumps(body))
