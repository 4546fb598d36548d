"""What operators do to a digest in flight: cancel it, resume it, settle ambiguity, sweep.

These functions take the caller's session and never commit: the CLI, the admin API and the
periodic worker tasks each wrap them in `session_scope()`. Where a decision means batches must be
sent, they return the batch ids and the caller enqueues `digest.send_batch` after its commit
(the domain does not know Celery). Watching a digest (`digest_status`) is digest/progress.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from digest.batch_ledger import cancel_batches
from digest.batch_recipients import rows_of
from digest.ledger_counts import count_by_status
from digest.progress import DigestNotFound
from digest.progress import digest_status as digest_status  # re-exported for existing callers
from digest.records import JsonRecord
from digest.sending import finish_digest_if_done
from schema.models import Delivery, DeliveryBatch, Digest, utcnow
from schema.statuses import BatchStatus, DeliveryStatus, DigestStatus

Decision = Literal["resend", "mark-sent", "mark-failed"]
DECISIONS: tuple[str, ...] = ("resend", "mark-sent", "mark-failed")


class OperationRefused(ValueError):
    """The digest's state does not allow this operation; the message says why."""


# --- results (their `as_dict()` is the JSON of `--json` and the admin API) ----------------------


@dataclass(frozen=True)
class Cancelled(JsonRecord):
    digest_id: int
    status: str
    batches_cancelled: int
    deliveries_cancelled: int
    batches_in_flight: int


@dataclass(frozen=True)
class Resumed(JsonRecord):
    digest_id: int
    status: str
    enqueue: list[int]  # batch ids the caller enqueues after its commit


@dataclass(frozen=True)
class Settled(JsonRecord):
    """What an operator's decision on ambiguous batches did."""

    digest_id: int
    batches: list[int]
    decision: str
    enqueue: list[int] = field(default_factory=list)  # to enqueue after the commit


def cancel_digest(session: Session, digest_id: int) -> Cancelled:
    """Stop a digest: it becomes `cancelled` and every pending batch with it, in one UPDATE.

    Batches already claimed finish their request (their outcome is still recorded); each
    remaining send_batch task finds the digest cancelled right before claiming and stops.
    """
    digest = _locked_digest(session, digest_id)
    if digest.status in (DigestStatus.SENT, DigestStatus.FAILED):
        raise OperationRefused(f"digest {digest_id} is already {digest.status}: nothing to cancel")
    if digest.status != DigestStatus.CANCELLED:
        digest.status = DigestStatus.CANCELLED
        digest.status_reason = "cancelled by an operator"
        digest.finished_at = utcnow()
    batch_ids, deliveries = cancel_batches(session, digest_id=digest_id)
    in_flight = count_by_status(session, DeliveryBatch, digest_id)[BatchStatus.SENDING]
    return Cancelled(
        digest_id=digest_id,
        status=DigestStatus.CANCELLED,
        batches_cancelled=len(batch_ids),
        deliveries_cancelled=deliveries,
        batches_in_flight=in_flight,
    )


def resume_digest(session: Session, digest_id: int) -> Resumed:
    """Send a paused digest's remaining batches (after the API key was fixed).

    `enqueue` lists the batch ids: the caller enqueues them after committing.
    """
    digest = _locked_digest(session, digest_id)
    if digest.status != DigestStatus.PAUSED:
        raise OperationRefused(f"digest {digest_id} is {digest.status}, not paused")
    digest.status = DigestStatus.SENDING
    digest.status_reason = None
    pending = list(
        session.scalars(
            select(DeliveryBatch.id)
            .where(
                DeliveryBatch.digest_id == digest_id, DeliveryBatch.status == BatchStatus.PENDING
            )
            .order_by(DeliveryBatch.seq)
        )
    )
    if not pending:
        finish_digest_if_done(session, digest_id)
    return Resumed(digest_id=digest_id, status=digest.status, enqueue=pending)


def resend_ambiguous(
    session: Session,
    decision: str,
    *,
    digest_id: int | None = None,
    batch_id: int | None = None,
) -> Settled:
    """Settle ambiguous batches of a digest (or one batch) by the operator's decision.

    - `resend`: back to pending, to be enqueued. SendGrid may have accepted the first request,
      so some recipients may get the email twice: the operator accepts that risk.
    - `mark-sent`: trust that SendGrid accepted it; its pending deliveries become sent.
    - `mark-failed`: assume it was not accepted; its pending deliveries fail.
    """
    if decision not in DECISIONS:
        raise OperationRefused(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    digest, batches = _ambiguous_batches(session, digest_id, batch_id)
    if decision == "resend" and digest.status == DigestStatus.CANCELLED:
        raise OperationRefused(f"digest {digest.id} is cancelled: mark its batches instead")
    now = utcnow()
    ids = [b.id for b in batches]
    for batch in batches:
        note = f"ambiguous, {decision} chosen by an operator at {now:%Y-%m-%d %H:%M} UTC"
        batch.error = f"{batch.error}; {note}" if batch.error else note
        if decision == "resend":
            batch.status = BatchStatus.PENDING
        elif decision == "mark-sent":
            batch.status = BatchStatus.SENT
            batch.sent_at = now
        else:
            batch.status = BatchStatus.FAILED
    if decision != "resend":
        _settle_deliveries(session, digest.id, ids, sent=decision == "mark-sent")
        return Settled(digest_id=digest.id, batches=ids, decision=decision)
    if digest.status in (DigestStatus.SENT, DigestStatus.FAILED):
        digest.status, digest.status_reason, digest.finished_at = DigestStatus.SENDING, None, None
    enqueue = ids if digest.status == DigestStatus.SENDING else []
    return Settled(digest_id=digest.id, batches=ids, decision=decision, enqueue=enqueue)


def _ambiguous_batches(
    session: Session, digest_id: int | None, batch_id: int | None
) -> tuple[Digest, list[DeliveryBatch]]:
    """The digest (locked) and its ambiguous batches (locked), or just the one batch named."""
    if digest_id is None and batch_id is None:
        raise OperationRefused("name a digest or a batch")
    query = select(DeliveryBatch).where(DeliveryBatch.status == BatchStatus.AMBIGUOUS)
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
    assert digest_id is not None
    digest = _locked_digest(session, digest_id)
    batches = list(
        session.scalars(query.where(DeliveryBatch.digest_id == digest_id).with_for_update())
    )
    if not batches:
        where = f"batch {batch_id}" if batch_id is not None else f"digest {digest_id}"
        raise OperationRefused(f"{where} has no ambiguous batch")
    return digest, batches


def _settle_deliveries(
    session: Session, digest_id: int, batch_ids: list[int], *, sent: bool
) -> None:
    """The undecided deliveries of marked batches follow the decision; the digest may finish."""
    session.execute(
        update(Delivery)
        .where(rows_of(session, batch_ids), Delivery.status == DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.SENT if sent else DeliveryStatus.FAILED,
            error=None if sent else "ambiguous batch marked failed by an operator",
        )
        .execution_options(synchronize_session=False)
    )
    session.flush()
    finish_digest_if_done(session, digest_id, refresh=True)


def reap_stale_claims(session: Session, older_than: float) -> list[int]:
    """Batches still `sending` `older_than` seconds after their claim become `ambiguous`.

    Their worker died (or hung) somewhere between the claim and recording SendGrid's answer; the
    request may or may not have reached SendGrid, so the batch waits for an operator. Returns
    the batch ids; digests left with nothing in flight are finished.
    """
    cutoff = utcnow() - timedelta(seconds=older_than)
    rows = session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.status == BatchStatus.SENDING, DeliveryBatch.claimed_at < cutoff)
        .values(
            status=BatchStatus.AMBIGUOUS,
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
                Digest.status == DigestStatus.SENDING,
                DeliveryBatch.status == BatchStatus.PENDING,
                or_(touched.is_(None), touched < cutoff),
            )
            .order_by(DeliveryBatch.id)
        )
    )
    if not ids:
        return []
    stamped = session.scalars(
        update(DeliveryBatch)
        .where(DeliveryBatch.id.in_(ids), DeliveryBatch.status == BatchStatus.PENDING)
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
        .where(Digest.id == digest_id, Digest.status == DigestStatus.PLANNED)
        .values(status=DigestStatus.CANCELLED, status_reason=reason, finished_at=now)
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
        .where(Digest.status == DigestStatus.PLANNED, Digest.created_at < cutoff)
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
