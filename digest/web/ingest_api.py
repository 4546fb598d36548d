"""`POST /api/events`: the site's CMS tells us about comparisons and votes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from digest.db import session_scope
from digest.ingest import IngestError, apply_event_detail
from digest.settings import get_settings
from digest.web.auth import require_bearer
from workers.publish import BrokerUnavailable, enqueue
from workers.tasks import plan_alert

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"])
EVENTS_PATH = "/api/events"


@router.post(
    EVENTS_PATH,
    status_code=200,
    responses={
        401: {"description": "Missing or wrong ingest token (checked before the body is read)"},
        413: {"description": "Body larger than DIGEST_INGEST_MAX_BYTES"},
        422: {"description": "A field is invalid, or the JSON is nested too deep"},
    },
)
def post_event(request: Request, event: dict[str, Any] = Body(...)) -> JSONResponse:
    """Apply one event (`comparison.published|updated|retracted`, `votes.updated`).

    The body is validated against `schema/events/*.schema.json`; a bad field gets 422 naming its
    path and nothing is written. Repeats of an event are answered 200 with `duplicate`.
    """
    require_bearer(request, get_settings().ingest_token)
    try:
        with session_scope() as session:
            applied = apply_event_detail(session, event, source="api")
    except IngestError as exc:
        return JSONResponse(
            status_code=422,
            content={
                "detail": [
                    {"loc": ["body", *exc.field.split(".")], "msg": exc.message, "field": exc.field}
                ]
            },
        )
    if applied.new_publication is not None:
        queue_alert(applied.new_publication)
    return JSONResponse({"status": applied.outcome})


def queue_alert(comparison_id: int) -> None:
    """After the commit: alert `every` subscribers (in-process when there is no broker).

    The comparison is stored whatever happens here; a broker outage is logged, not answered
    with an error the CMS would retry (the retry would be a duplicate and queue nothing).
    """
    try:
        enqueue(plan_alert.s(comparison_id))
    except BrokerUnavailable as exc:
        log.error("comparison %s stored but its alert was not queued: %s", comparison_id, exc)
    except Exception:  # in-process (no broker), the alert's own failure: the comparison stands
        log.exception("comparison %s stored but its alert failed", comparison_id)
