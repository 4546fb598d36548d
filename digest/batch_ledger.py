"""A batch's transitions in the ledger, each one conditional UPDATE on the batch (and, when they
leave it, its pending deliveries: a `sent` batch needs none, see digest/ledger_counts.py).

pending → sending (the claim), sending → sent | failed | ambiguous | cancelled | pending (the
claim released). Each transition names the state it starts from, so a worker that lost its
claim changes nothing. digest/sending.py decides which transition an answer calls for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from digest.batch_recipients import rows_of, unclaimed
from digest.db import statement_scope
from schema.models import Delivery, DeliveryBatch, Digest, UTCDateTime, utcnow
from schema.statuses import BatchStatus, DeliveryStatus, DigestStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedBatch:
    """What the claim's UPDATE returned about the batch this worker now owns."""

    id: int
    digest_id: int
    segment_id: int
    attempts: int  # counting this claim: 1 on the batch's first


# A sent batch's own statements (the claim, the 202) are named SQL, compiled once: built as
# expressions, SQLAlchemy's construction and cache key cost about three times the CPU per call
# of the statement itself (0.54 against 0.16 ms for the open-batch look, README Benchmarks),
# once or more per 1,000 recipients.
CLAIM = text(
    f"""
    UPDATE delivery_batches
    SET status = '{BatchStatus.SENDING}', claimed_at = :now, attempts = attempts + 1
    WHERE id = :batch_id AND status = '{BatchStatus.PENDING}'
      AND EXISTS (SELECT 1 FROM digests
                  WHERE digests.id = delivery_batches.digest_id
                    AND digests.status = '{DigestStatus.SENDING}')
    RETURNING digest_id, segment_id, attempts
    """
).bindparams(bindparam("now", type_=UTCDateTime()))

# `ambiguous` too: if the reaper gave up on us while SendGrid was slow, the 202 is the truth.
MARK_SENT = text(
    f"""
    UPDATE delivery_batches
    SET status = '{BatchStatus.SENT}', message_id = :message_id, sent_at = :now
    WHERE id = :batch_id AND status IN ('{BatchStatus.SENDING}', '{BatchStatus.AMBIGUOUS}')
    """
).bindparams(bindparam("now", type_=UTCDateTime()))


def claim(session: Session, batch_id: int) -> ClaimedBatch | None:
    """pending → sending in one conditional UPDATE; a returned row means this worker owns it.

    The digest's status is part of the condition, so a cancelled or paused digest stops here.
    The UPDATE returns what the request needs from the batch row, so it is not read again.
    """
    row = session.connection().execute(CLAIM, {"batch_id": batch_id, "now": utcnow()}).one_or_none()
    if row is None:
        return None
    return ClaimedBatch(batch_id, row.digest_id, row.segment_id, row.attempts)


def record_sent(batch_id: int, message_id: str | None, attempts: int = 4) -> None:
    """Write the 202 down, on a fresh connection if the first one drops.

    SendGrid took the message; losing that fact to a dropped connection (failover,
    pg_terminate_backend) would make a sent batch ambiguous. The UPDATE is idempotent. It is
    one statement, so it runs as its own transaction (`statement_scope`: no ping, BEGIN or
    COMMIT round trips, once per batch).
    """
    for attempt in range(1, attempts + 1):
        try:
            with statement_scope() as connection:
                mark_sent(connection, batch_id, message_id)
            return
        except OperationalError:
            if attempt == attempts:
                raise
            log.warning("batch %s: recording the 202 failed, retrying", batch_id, exc_info=True)
            time.sleep(0.2 * 2**attempt)


def mark_sent(connection: Connection, batch_id: int, message_id: str | None) -> None:
    connection.execute(MARK_SENT, {"batch_id": batch_id, "message_id": message_id, "now": utcnow()})
    # The batch row alone says it: its still pending deliveries read as sent
    # (digest.ledger_counts.delivery_status), no UPDATE of a thousand delivery rows.


def mark_failed(session: Session, batch_id: int, reason: str) -> None:
    session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == BatchStatus.SENDING)
        .values(status=BatchStatus.FAILED, error=reason)
        .execution_options(synchronize_session=False)
    )
    _settle_pending(session, batch_id, DeliveryStatus.FAILED, error=reason)


def _settle_pending(
    session: Session, batch_id: int, status: DeliveryStatus, error: str | None = None
) -> None:
    """The batch's still pending deliveries follow the batch (the error only when given)."""
    values: dict[str, object] = {"status": status}
    if error is not None:
        values["error"] = error
    session.execute(
        update(Delivery)
        .where(rows_of(session, [batch_id]), Delivery.status == DeliveryStatus.PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def mark_empty(session: Session, batch_id: int) -> None:
    """A claimed batch with nobody left to mail: closed without a request, not a failure."""
    session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == BatchStatus.SENDING)
        .values(status=BatchStatus.CANCELLED, error="no recipient left to send to")
        .execution_options(synchronize_session=False)
    )


def mark_ambiguous(session: Session, batch_id: int, reason: str) -> None:
    """SendGrid may have accepted the request: never resent without an operator."""
    session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == BatchStatus.SENDING)
        .values(status=BatchStatus.AMBIGUOUS, error=reason)
        .execution_options(synchronize_session=False)
    )


def release(session: Session, batch_id: int, reason: str) -> BatchStatus | None:
    """sending → pending: SendGrid did not take the message, another claim may send it.

    If the digest was cancelled while the request was out, the batch is cancelled instead
    (cancel only touches pending batches, so it could not see this one). Returns the batch's new
    status, or None when this worker no longer held the claim.
    """
    result = session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == BatchStatus.SENDING)
        .values(status=BatchStatus.PENDING, error=reason)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    digest_status = session.scalar(
        select(Digest.status)
        .join(DeliveryBatch, DeliveryBatch.digest_id == Digest.id)
        .where(DeliveryBatch.id == batch_id)
    )
    if digest_status == DigestStatus.CANCELLED:
        cancel_batches(session, [batch_id])
        return BatchStatus.CANCELLED
    return BatchStatus.PENDING


def cancel_batches(
    session: Session, batch_ids: list[int] | None = None, *, digest_id: int | None = None
) -> tuple[list[int], int]:
    """Pending batches (these, or all of a digest's) and their pending deliveries: `cancelled`.

    The one way batches are cancelled (an operator's cancel, a task finding its digest
    cancelled). Returns the ids of the batches cancelled and how many deliveries went with them.
    """
    which = (
        DeliveryBatch.id.in_(batch_ids or [])
        if digest_id is None
        else DeliveryBatch.digest_id == digest_id
    )
    cancelled = list(
        session.execute(
            update(DeliveryBatch)
            .where(which, DeliveryBatch.status == BatchStatus.PENDING)
            .values(status=BatchStatus.CANCELLED)
            .returning(DeliveryBatch.id)
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    deliveries = 0
    if cancelled:
        deliveries = session.execute(
            update(Delivery)
            .where(rows_of(session, cancelled), Delivery.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.CANCELLED)
            .execution_options(synchronize_session=False)
        ).rowcount
        # Batches never claimed have no rows: their planned recipients go with them.
        deliveries += session.scalar(
            select(func.coalesce(func.sum(DeliveryBatch.size), 0)).where(
                DeliveryBatch.id.in_(cancelled), unclaimed()
            )
        )
    return cancelled, deliveries


def fail_addresses(session: Session, batch_id: int, named: dict[str, str]) -> None:
    """Deliveries SendGrid named as bad fail with its reason; the batch keeps the rest."""
    rows = session.execute(
        select(Delivery.id, Delivery.email).where(
            rows_of(session, [batch_id]),
            Delivery.status == DeliveryStatus.PENDING,
            func.lower(Delivery.email).in_(list(named)),
        )
    ).all()
    for row in rows:
        session.execute(
            update(Delivery)
            .where(Delivery.id == row.id)
            .values(
                status=DeliveryStatus.FAILED,
                error=f"rejected by SendGrid: {named[row.email.lower()]}",
            )
            .execution_options(synchronize_session=False)
        )
