"""`/console/digests` and `/console/digests/{id}`: status, progress, batches, the ledger by
address, and the operator's decisions — through digest/operations.py, like `digest cancel`,
`resume` and `resend-ambiguous`; batches to send go through workers/publish.py. Every decision
is written to the audit log in the transaction that makes it."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Form, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from digest import audit
from digest.db import session_scope
from digest.ledger_lookup import find_recipient
from digest.operations import (
    DECISIONS,
    OperationRefused,
    cancel_digest,
    resend_ambiguous,
    resume_digest,
)
from digest.progress import DigestNotFound, digest_report, recent_digests, sending_progress
from digest.web.console.views import CONSOLE_HEADERS, Signed, csrf_checked, render, signed_in
from workers.publish import BrokerUnavailable
from workers.tasks import dispatch_batches

router = APIRouter(tags=["console"], include_in_schema=False, dependencies=[Depends(signed_in)])
NOTICES = {
    "cancelled": "Cancelled: pending batches will not be sent; requests in flight finish.",
    "resumed": "Resumed: the remaining batches are queued.",
    "settled": "Decision recorded.",
    "broker": "Recorded, but the task broker is unreachable: the batches stay pending and "
    "beat's orphan sweep queues them again.",
}


@router.get("/console/digests")
def digest_list(signed: Signed = Depends(signed_in)) -> HTMLResponse:
    with session_scope() as session:
        reports = recent_digests(session, 100).digests
    return render("digests.html", signed, page="digests", reports=reports)


def _page_of(signed: Signed, digest_id: int, address: str, notice: str, error: str = ""):
    with session_scope() as session:
        try:
            report = digest_report(session, digest_id)
        except DigestNotFound as exc:
            raise HTTPException(404, str(exc), CONSOLE_HEADERS) from exc
        progress = sending_progress(session, digest_id)
        traces = find_recipient(session, digest_id, address) if address else None
    return render(
        "digest.html",
        signed,
        409 if error else 200,
        page="digests",
        report=report,
        progress=progress,
        address=address,
        traces=traces,
        notice=NOTICES.get(notice, ""),
        error=error,
        decisions=DECISIONS,
    )


@router.get("/console/digests/{digest_id}")
def digest_page(
    digest_id: int, address: str = "", notice: str = "", signed: Signed = Depends(signed_in)
) -> HTMLResponse:
    return _page_of(signed, digest_id, address.strip()[:320], notice)


@router.get("/console/digests/{digest_id}/progress")
def digest_progress(digest_id: int, signed: Signed = Depends(signed_in)) -> HTMLResponse:
    with session_scope() as session:
        try:
            report = digest_report(session, digest_id)
        except DigestNotFound as exc:
            raise HTTPException(404, str(exc), CONSOLE_HEADERS) from exc
        progress = sending_progress(session, digest_id)
    return render("_progress.html", signed, report=report, progress=progress)


def _act(
    signed: Signed,
    digest_id: int,
    action: str,
    operate: Callable[..., object],
    describe: Callable[[object], tuple[str, list[int]]],
) -> Response:
    """Run one operation and its audit entry in one transaction, then queue what it asks."""
    try:
        with session_scope() as session:
            result = operate(session)
            detail, enqueue = describe(result)
            audit.record(session, signed.email, action, f"digest {digest_id}", detail)
    except DigestNotFound as exc:
        raise HTTPException(404, str(exc), CONSOLE_HEADERS) from exc
    except OperationRefused as exc:
        return _page_of(signed, digest_id, "", "", str(exc))
    notice = action.split(".")[-1]
    if enqueue:
        try:
            dispatch_batches(enqueue)
        except BrokerUnavailable:
            notice = "broker"
    return RedirectResponse(
        f"/console/digests/{digest_id}?notice={notice}", 303, headers=CONSOLE_HEADERS
    )


@router.post("/console/digests/{digest_id}/cancel")
def cancel(digest_id: int, signed: Signed = Depends(csrf_checked)) -> Response:
    return _act(
        signed,
        digest_id,
        "digest.cancelled",
        lambda s: cancel_digest(s, digest_id),
        lambda r: (f"{r.batches_cancelled} batch(es), {r.deliveries_cancelled} recipient(s)", []),
    )


@router.post("/console/digests/{digest_id}/resume")
def resume(digest_id: int, signed: Signed = Depends(csrf_checked)) -> Response:
    return _act(
        signed,
        digest_id,
        "digest.resumed",
        lambda s: resume_digest(s, digest_id),
        lambda r: (f"{len(r.enqueue)} batch(es) queued", r.enqueue),
    )


@router.post("/console/digests/{digest_id}/batches/{batch_id}")
def settle(
    digest_id: int,
    batch_id: int,
    decision: str = Form(...),
    signed: Signed = Depends(csrf_checked),
) -> Response:
    """One ambiguous batch: resend (may reach some twice), mark sent, or mark failed."""
    return _act(
        signed,
        digest_id,
        "digest.settled",
        lambda s: resend_ambiguous(s, decision, digest_id=digest_id, batch_id=batch_id),
        lambda r: (f"batch {batch_id}: {decision}", r.enqueue),
    )
