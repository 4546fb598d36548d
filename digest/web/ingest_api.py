"""`POST /api/events`: the site's CMS tells us about comparisons and votes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from digest.db import session_scope
from digest.ingest import IngestError, apply_event
from digest.settings import get_settings
from digest.web.auth import require_bearer

router = APIRouter(tags=["ingest"])


@router.post(
    "/api/events",
    status_code=200,
    responses={401: {"description": "Missing or wrong ingest token"}, 422: {}},
)
def post_event(request: Request, event: dict[str, Any] = Body(...)) -> JSONResponse:
    """Apply one event (`comparison.published|updated|retracted`, `votes.updated`).

    The body is validated against `schema/events/*.schema.json`; a bad field gets 422 naming its
    path and nothing is written. Repeats of an event are answered 200 with `duplicate`.
    """
    require_bearer(request, get_settings().ingest_token)
    try:
        with session_scope() as session:
            outcome = apply_event(session, event, source="api")
    except IngestError as exc:
        return JSONResponse(
            status_code=422,
            content={
                "detail": [
                    {"loc": ["body", *exc.field.split(".")], "msg": exc.message, "field": exc.field}
                ]
            },
        )
    return JSONResponse({"status": outcome})
