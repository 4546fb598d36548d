"""What operators do to a digest in flight: watch it, cancel it, resume it, settle ambiguity.

These functions take the caller's session and never commit: the CLI, the admin API and the
periodic worker tasks each wrap them in `session_scope()`. Where a decision means batches must be
sent, they return the batch ids and the caller enqueues `digest.send_batch` after its commit
(the domain does not know Celery).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from digest.sending import finish_digest_if_done
from digest.settings import get_settings
from schema.models import (
    BATCH_STATUSES,
    DELIVERY_STATUSES,
    Delivery,
    DeliveryBatch,
    Digest,
    utcnow,
)

Decision = Literal["resend", "mark-sent", "mark-failed"]
DECISIONS: tuple[str, ...] = ("resend", "mark-sent", "mark-failed")


class DigestNotFound(LookupError):
    """No digest (or batch) with that id."""


class OperationRefused(ValueError):
    """The digest's state does not allow this operation; the message says why."""


def digest_status(session: Session, digest_id: int | None = None, limit: int = 20) -> dict:
    """One digest's progress, or the latest `limit` digests' as {"digests": [...]} without an id.

    Each digest carries counts of batches and deliveries by status and its ambiguous batches
    (id, sequence, recipients still undecided, attempts, claim time, last error).
    """
    if digest_id is not None:
        digest = session.get(Digest, digest_id)
        if digest is None:
            raise DigestNotFound(f"no digest with id {digest_id}")
        return _describe(session, [digest])[0]
    digests = list(session.scalars(select(Digest).order_by(Digest.id.desc()).limit(limit)))
    return {"digests": _describe(session, digests)}


def cancel_digest(session: Session, digest_id: int) -> dict:
    """Stop a digest: it becomes `cancelled` and every pending batch with it, in one UPDATE.

    Batches already claimed finish their request (their outcome is still recorded); each
    remaining send_batch task finds the digest cancelled right before claiming and stops.
    """
    digest = _locked_digest(session, digest_id)
    if digest.status in ("sent", "failed"):
        raise OperationRefused(f"digest {digest_id} is already {digest.status}: nothing to cancel")
    if digest.status != "cancelled":
        digest.status = "cancelled"
        digest.status_reason = "cancelled by an operator"
        digest.finished_at = utcnow()
    cancelled = session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.digest_id == digest_id, DeliveryBatch.status == "pending")
        .values(status="cancelled")
        .returning(DeliveryBatch.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    batch_ids = list(cancelled)
    deliveries = 0
    if batch_ids:
        deliveries = session.execute(
            update(Delivery)
            .where(Delivery.batch_id.in_(batch_ids), Delivery.status == "pending")
            .values(status="cancelled")
            .execution_options(synchronize_session=False)
        ).rowcount
    in_flight = session.scalar(
        select(func.count())
        .select_from(DeliveryBatch)
        .where(DeliveryBatch.digest_id == digest_id, DeliveryBatch.status == "sending")
    )
    return {
        "digest_id": digest_id,
        "status": "cancelled",
        "batches_cancelled": len(batch_ids),
        "deliveries_cancelled": deliveries,
        "batches_in_flight": in_flight or 0,
    }


def resume_digest(session: Session, digest_id: int) -> dict:
    """Send a paused digest's remaining batches (after the API key was fixed).

    Returns {"enqueue": [batch ids]}: the caller enqueues them after committing.
    """
    digest = _locked_digest(session, digest_id)
    if digest.status != "paused":
        raise OperationRefused(f"digest {digest_id} is {digest.status}, not paused")
    digest.status = "sending"
    digest.status_reason = None
    pending = list(
        session.scalars(
            select(DeliveryBatch.id)
            .where(DeliveryBatch.digest_id == digest_id, DeliveryBatch.status == "pending")
            .order_by(DeliveryBatch.seq)
        )
    )
    if not pending:
        finish_digest_if_done(session, digest_id)
    return {"digest_id": digest_id, "status": digest.status, "enqueue": pending}


def resend_ambiguous(
    session: Session,
    decision: str,
    *,
    digest_id: int | None = None,
    batch_id: int | None = None,
) -> dict:
    """Settle ambiguous batches of a digest (or one batch) by the operator's decision.

    - `resend`: back to pending, to be enqueued. SendGrid may have accepted the first request,
      so some recipients may get the email twice: the operator accepts that risk.
    - `mark-sent`: trust that SendGrid accepted it; its pending deliveries become sent.
    - `mark-failed`: assume it was not accepted; its pending deliveries fail.
    Returns {"batches": [...], "decision": ..., "enqueue": [...]}.
    """
    if decision not in DECISIONS:
        raise OperationRefused(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if digest_id is None and batch_id is None:
        raise OperationRefused("name a digest or a batch")
    query = select(DeliveryBatch).where(DeliveryBatch.status == "ambiguous")
    if batch_id is not None:
        batch = session.get(DeliveryBatch, batch_id)
        if batch is None or (digest_id is not None and batch.digest_id != digest_id):
            raise DigestNotFound(
                f"no batch {batch_id}" + (f" in digest {digest_id}" if digest_id else "")
            )
        query = query.where(DeliveryBatch.id == batch_id)
        digest_id = batch.digest_id
    elif session.get(Digest, digest_id) is None:
        raise DigestNotFound(f"no digest with id {digest_id}")
    digest = _locked_digest(session, digest_id)
    batches = list(
        session.scalars(query.where(DeliveryBatch.digest_id == digest_id).with_for_update())
    )
    if not batches:
        where = f"batch {batch_id}" if batch_id is not None else f"digest {digest_id}"
        raise OperationRefused(f"{where} has no ambiguous batch")
    if decision == "resend" and digest.status == "cancelled":
        raise OperationRefused(f"digest {digest_id} is cancelled: mark its batches instead")

    now = utcnow()
    ids = [b.id for b in batches]
    enqueue: list[int] = []
    for batch in batches:
        note = f"ambiguous, {decision} chosen by an operator at {now:%Y-%m-%d %H:%M} UTC"
        batch.error = f"{batch.error}; {note}" if batch.error else note
        if decision == "resend":
            batch.status = "pending"
        elif decision == "mark-sent":
            batch.status = "sent"
            batch.sent_at = now
        else:
            batch.status = "failed"
    if decision == "resend":
        if digest.status in ("sent", "failed"):
            digest.status, digest.status_reason, digest.finished_at = "sending", None, None
        if digest.status == "sending":
            enqueue = ids
    else:
        outcome = "sent" if decision == "mark-sent" else "failed"
        session.execute(
            update(Delivery)
            .where(Delivery.batch_id.in_(ids), Delivery.status == "pending")
            .values(
                status=outcome,
                error=None if outcome == "sent" else "ambiguous batch marked failed by an operator",
            )
            .execution_options(synchronize_session=False)
        )
        session.flush()
        finish_digest_if_done(session, digest_id, refresh=True)
    return {"digest_id": digest_id, "batches": ids, "decision": decision, "enqueue": enqueue}


def reap_stale_claims(session: Session, older_than: float) -> list[int]:
    """Batches still `sending` `older_than` seconds after their claim become `ambiguous`.

    Their worker died (or hung) somewhere between the claim and recording SendGrid's answer; the
    request may or may not have reached SendGrid, so the batch waits for an operator. Returns
    the batch ids; digests left with nothing in flight are finished.
    """
    cutoff = utcnow() - timedelta(seconds=older_than)
    rows = session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.status == "sending", DeliveryBatch.claimed_at < cutoff)
        .values(
            status="ambiguous",
            error=f"still sending {older_than:.0f}s after its claim: worker lost mid-request?",
        )
        .returning(DeliveryBatch.id, DeliveryBatch.digest_id)
        .execution_options(synchronize_session=False)
    ).all()
    for digest_id in sorted({digest_id for _, digest_id in rows}):
        finish_digest_if_done(session, digest_id)
    return sorted(batch_id for batch_id, _ in rows)


def requeue_orphaned_batches(session: Session, older_than: float) -> list[int]:
    """Pending batches of a sending digest that nothing touched for `older_than` seconds.

    A task can be lost between a commit and its enqueue (a worker killed right after splitting
    a batch or releasing a claim), or with the broker's memory (Redis restarted empty).
    Enqueueing such a batch again is safe: the claim lets only one task send it, and a duplicate
    does nothing. The returned batches get `claimed_at` stamped (on a pending batch it means
    "last claimed or re-enqueued"), so the next sweep leaves them alone for another
    `older_than` seconds instead of enqueueing them again and again.
    """
    cutoff = utcnow() - timedelta(seconds=older_than)
    touched = func.coalesce(DeliveryBatch.claimed_at, Digest.started_at, Digest.created_at)
    ids = list(
        session.scalars(
            select(DeliveryBatch.id)
            .join(Digest, Digest.id == DeliveryBatch.digest_id)
            .where(
                Digest.status == "sending",
                DeliveryBatch.status == "pending",
                or_(touched.is_(None), touched < cutoff),
            )
            .order_by(DeliveryBatch.id)
        )
    )
    if not ids:
        return []
    stamped = session.scalars(
        update(DeliveryBatch)
        .where(DeliveryBatch.id.in_(ids), DeliveryBatch.status == "pending")
        .values(claimed_at=utcnow())
        .returning(DeliveryBatch.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(stamped)


def withdraw_unqueued_digest(session: Session, digest_id: int, reason: str) -> bool:
    """Cancel a digest whose planning task could not be queued, if it is still `planned`.

    For a caller that tells its client "nothing happened, try again": the retry creates a new
    digest, so this one must never be sent. False when a planner got to it first (its task was
    queued after all); then the digest stands.
    """
    now = utcnow()
    withdrawn = session.scalar(
        update(Digest)
        .where(Digest.id == digest_id, Digest.status == "planned")
        .values(status="cancelled", status_reason=reason, finished_at=now)
        .returning(Digest.id)
        .execution_options(synchronize_session=False)
    )
    return withdrawn is not None


PLAN_REQUEUED_AT = "plan_requeued_at"  # key in Digest.options: when a sweep last re-queued it


def requeue_planned_digests(
    session: Session, older_than: float, *, now: datetime | None = None
) -> list[int]:
    """Digests still `planned` `older_than` seconds after they were requested (or last swept).

    An ad hoc digest is committed `planned` and then its `digest.plan_digest` task is queued; if
    that task was lost (the broker restarted empty, the publish failed after the commit), the
    digest would wait forever. The caller queues `digest.plan_digest` again for each id.

    Safe against live planners: rows locked by a planning transaction are skipped
    (`FOR UPDATE SKIP LOCKED` on PostgreSQL), and weekly waves and alerts are created and
    planned in one transaction, so they are never seen `planned` from outside. A duplicate task
    is harmless: `planning.plan_digest_id` locks the row and plans only a digest still
    `planned`. Each returned digest is stamped, so the next sweep leaves it alone for another
    `older_than` seconds instead of queueing it on every tick while the workers are busy.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=older_than)
    candidates = session.scalars(
        select(Digest)
        .where(Digest.status == "planned", Digest.created_at < cutoff)
        .order_by(Digest.id)
        .with_for_update(skip_locked=True)
    ).all()
    due: list[int] = []
    for digest in candidates:
        options = dict(digest.options or {})
        stamped = options.get(PLAN_REQUEUED_AT)
        if stamped and datetime.fromisoformat(stamped) >= cutoff:
            continue
        options[PLAN_REQUEUED_AT] = now.isoformat()
        digest.options = options
        due.append(digest.id)
    session.flush()
    return due


# --- helpers ------------------------------------------------------------------------------------


def _locked_digest(session: Session, digest_id: int) -> Digest:
    digest = session.execute(
        select(Digest).where(Digest.id == digest_id).with_for_update()
    ).scalar_one_or_none()
    if digest is None:
        raise DigestNotFound(f"no digest with id {digest_id}")
    return digest


def _describe(session: Session, digests: list[Digest]) -> list[dict[str, Any]]:
    """Counts for several digests in three grouped queries, not three per digest."""
    ids = [d.id for d in digests]
    if not ids:
        return []
    batches: dict[int, dict[str, int]] = {i: dict.fromkeys(BATCH_STATUSES, 0) for i in ids}
    deliveries: dict[int, dict[str, int]] = {i: dict.fromkeys(DELIVERY_STATUSES, 0) for i in ids}
    for model, into in ((DeliveryBatch, batches), (Delivery, deliveries)):
        rows = session.execute(
            select(model.digest_id, model.status, func.count())
            .where(model.digest_id.in_(ids))
            .group_by(model.digest_id, model.status)
        )
        for digest_id, status, count in rows:
            into[digest_id][status] = count
    undecided = (
        select(Delivery.batch_id, func.count().label("n"))
        .where(Delivery.digest_id.in_(ids), Delivery.status == "pending")
        .group_by(Delivery.batch_id)
        .subquery()
    )
    ambiguous: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for batch, recipients in session.execute(
        select(DeliveryBatch, func.coalesce(undecided.c.n, 0))
        .outerjoin(undecided, undecided.c.batch_id == DeliveryBatch.id)
        .where(DeliveryBatch.digest_id.in_(ids), DeliveryBatch.status == "ambiguous")
        .order_by(DeliveryBatch.id)
    ):
        ambiguous[batch.digest_id].append(
            {
                "batch_id": batch.id,
                "seq": batch.seq,
                "recipients": recipients,
                "attempts": batch.attempts,
                "claimed_at": _iso(batch.claimed_at),
                "error": batch.error,
            }
        )
    cutoff = utcnow() - timedelta(seconds=get_settings().send_claim_timeout)
    stale = dict(
        session.execute(
            select(DeliveryBatch.digest_id, func.count())
            .where(
                DeliveryBatch.digest_id.in_(ids),
                DeliveryBatch.status == "sending",
                DeliveryBatch.claimed_at < cutoff,
            )
            .group_by(DeliveryBatch.digest_id)
        ).all()
    )
    return [
        {
            "id": d.id,
            "kind": d.kind,
            "status": d.status,
            "status_reason": d.status_reason,
            "subject": d.subject,
            "recipients": d.recipients,
            "created_at": _iso(d.created_at),
            "started_at": _iso(d.started_at),
            "finished_at": _iso(d.finished_at),
            "batches": batches[d.id],
            "deliveries": deliveries[d.id],
            "ambiguous": ambiguous[d.id],
            # Claimed longer ago than any request may take: the reaper will call them ambiguous.
            "stale_sending": stale.get(d.id, 0),
        }
        for d in digests
    ]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
