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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.db import session_scope
from digest.settings import get_settings
from digest.web.auth import require_bearer
from schema.models import Digest, DigestItem, DigestSegment

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


def _detail(digest_id: int) -> dict[str, Any]:
    """Status and counts, plus the plan (window, items, segments, who got nothing)."""
    from digest.operations import DigestNotFound, digest_status

    with session_scope() as session:
        try:
            status = digest_status(session, digest_id)
        except DigestNotFound as exc:
            raise HTTPException(404, detail=str(exc)) from exc
        digest = session.get(Digest, digest_id)
        assert digest is not None
        items = session.scalar(
            select(func.count()).select_from(DigestItem).where(DigestItem.digest_id == digest_id)
        )
        segments = session.execute(
            select(DigestSegment.segment_key, DigestSegment.recipients)
            .where(DigestSegment.digest_id == digest_id)
            .order_by(DigestSegment.id)
        ).all()
        options = digest.options or {}
        return {
            **status,
            "window_start": digest.window_start.isoformat() if digest.window_start else None,
            "window_end": digest.window_end.isoformat() if digest.window_end else None,
            "slot_key": digest.slot_key,
            "items": items,
            "renders": digest.renders,
            "segments": [{"key": key, "recipients": n} for key, n in segments],
            "left_out": options.get("left_out", {}),
            "dry_run": bool(options.get("dry_run")),
            "stats": _stats(session, digest_id),
        }


def _stats(session: Session, digest_id: int) -> dict[str, Any]:
    """The figures `digest stats` shows (SendGrid events included), without the repeated header."""
    from digest.stats import digest_stats

    figures = digest_stats(session, digest_id)
    figures.pop("digest")
    return figures


# Seconds a client should wait before asking again when the broker was unreachable.
BROKER_RETRY_AFTER = 30


def _queue_plan(digest_id: int) -> JSONResponse | None:
    """Queue the digest's planning task; a 503 answer if the broker cannot be reached.

    On 503 the digest is withdrawn (`cancelled`, with the reason) so that the client's retry,
    which a 503 invites and many HTTP clients make by themselves, cannot send it twice. If the
    task did get through after all (a worker already took the row), the digest stands and the
    caller answers 202 as usual.
    """
    from digest.operations import withdraw_unqueued_digest
    from workers.publish import BrokerUnavailable, enqueue
    from workers.tasks import plan_digest

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
                "status": "cancelled",
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
    from digest.planning import PlanError, request_digest

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
    return _detail(digest_id)


@router.post(
    "/{digest_id}/cancel",
    responses={
        404: {"description": "No such digest"},
        409: {"description": "Already sent or failed"},
    },
)
def cancel(digest_id: int) -> dict[str, Any]:
    """Stop a digest: pending batches are cancelled; batches in flight finish their request."""
    from digest.operations import DigestNotFound, OperationRefused, cancel_digest

    try:
        with session_scope() as session:
            return cancel_digest(session, digest_id)
    except DigestNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    except OperationRefused as exc:
        raise HTTPException(409, detail=str(exc)) from exc
