"""Operators over HTTP: request an ad hoc digest, watch it, cancel it.

Every route needs `Authorization: Bearer $DIGEST_ADMIN_TOKEN` (constant-time comparison in
digest/web/auth.py; an empty token switches the routes off). A request creates the digest
(`planned`) and queues `digest.plan_digest`; the worker plans, renders and sends it through the
same batch tasks as the weekly digest. Without a broker that happens before the answer. If the
broker cannot be reached the answer is 503 with Retry-After and the digest is withdrawn
(`cancelled`), so a retry sends it once; a task lost after a 202 is re-queued by beat.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from digest.db import session_scope
from digest.operations import OperationRefused, cancel_digest, withdraw_unqueued_digest
from digest.planning import PlanError, request_digest
from digest.progress import DigestNotFound, digest_detail
from digest.settings import get_settings
from digest.web.auth import require_bearer
from schema.models import Digest
from schema.statuses import DigestStatus
from workers.publish import BrokerUnavailable, enqueue
from workers.tasks import plan_digest

log = logging.getLogger(__name__)


def require_admin(request: Request) -> None:
    require_bearer(request, get_settings().admin_token)


router = APIRouter(
    prefix="/admin/digests",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={401: {"description": "Missing or wrong admin token"}},
)


class DigestRequest(BaseModel):
    """An ad hoc digest: the window, subject and categories are optional; `to` sends one test
    copy to that address only; `dry_run` plans and renders but sends nothing."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    subject: str | None = Field(default=None, max_length=290)
    segment: list[str] = Field(default_factory=list, max_length=50)
    to: str | None = Field(default=None, max_length=320)
    dry_run: bool = False

    @field_validator("segment", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


# Seconds a client should wait before asking again when the broker was unreachable.
BROKER_RETRY_AFTER = 30


def _queue_plan(digest_id: int) -> JSONResponse | None:
    """Queue the digest's planning task; a 503 answer if the broker cannot be reached.

    On 503 the digest is withdrawn (`cancelled`, with the reason) so that the client's retry,
    which a 503 invites and many HTTP clients make by themselves, cannot send it twice. If the
    task did get through after all (a worker already took the row), the digest stands and the
    caller answers 202 as usual.
    """
    try:
        enqueue(plan_digest.s(digest_id))
    except BrokerUnavailable as exc:
        log.error("digest %s not queued: %s", digest_id, exc)
        with session_scope() as session:
            withdrawn = withdraw_unqueued_digest(
                session, digest_id, "not queued: the task broker was unreachable; request it again"
            )
        if not withdrawn:
            return None
        return JSONResponse(
            status_code=503,
            content={
                "detail": "the task queue is unavailable; nothing was sent, try again later",
                "id": digest_id,
                "status": DigestStatus.CANCELLED,
            },
            headers={"Retry-After": str(BROKER_RETRY_AFTER)},
        )
    return None


@router.post(
    "",
    status_code=202,
    responses={
        202: {"description": "Digest created; planned and sent by a worker"},
        413: {"description": "Body larger than DIGEST_DEFAULT_MAX_BYTES"},
        422: {"description": "A field is invalid; `field` names it"},
        503: {"description": "The task queue is unreachable; nothing was sent (see Retry-After)"},
    },
)
def create_digest(body: DigestRequest) -> JSONResponse:
    """Request an ad hoc digest (or one test copy with `to`, or a `dry_run`)."""
    try:
        with session_scope() as session:
            digest = request_digest(
                session,
                since=body.since,
                until=body.until,
                subject=body.subject,
                segments=body.segment,
                to=body.to,
                dry_run=body.dry_run,
            )
            digest_id, kind = digest.id, digest.kind
    except PlanError as exc:
        return JSONResponse(
            status_code=422,
            content={
                "detail": [{"loc": ["body", exc.field], "msg": exc.message, "field": exc.field}]
            },
        )
    unavailable = _queue_plan(digest_id)
    if unavailable is not None:
        return unavailable
    with session_scope() as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None
        status, reason = digest.status, digest.status_reason
    return JSONResponse(
        status_code=202,
        content={"id": digest_id, "kind": kind, "status": status, "status_reason": reason},
        headers={"Location": f"/admin/digests/{digest_id}"},
    )


@router.get("/{digest_id}", responses={404: {"description": "No such digest"}})
def get_digest(digest_id: int) -> dict[str, Any]:
    """A digest's status, counts of batches and deliveries by status, and its plan."""
    try:
        with session_scope() as session:
            return digest_detail(session, digest_id).as_dict()
    except DigestNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from exc


@router.post(
    "/{digest_id}/cancel",
    responses={
        404: {"description": "No such digest"},
        409: {"description": "Already sent or failed"},
    },
)
def cancel(digest_id: int) -> dict[str, Any]:
    """Stop a digest: pending batches are cancelled; batches in flight finish their request."""
    try:
        with session_scope() as session:
            return cancel_digest(session, digest_id).as_dict()
    except DigestNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    except OperationRefused as exc:
        raise HTTPException(409, detail=str(exc)) from exc
