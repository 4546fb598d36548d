"""Send one planned batch exactly once: claim it, send it, write down what SendGrid said.

SendGrid has no idempotency key, so the database is the ledger. A batch is claimed with one
conditional UPDATE (pending → sending, only while its digest is `sending`) and the claim is
committed before the request; no session stays open while the request is in flight. A duplicated
or redelivered task finds the batch already claimed or finished and does nothing.

What each answer means for the batch:

- 202: the batch becomes `sent`, with SendGrid's `X-Message-Id`; its pending deliveries read as
  sent from then on (digest/ledger_counts.py `delivery_status`).
- SendGrid did not take the message (429, 5xx, or the request never got out whole: connection
  refused, DNS, a reset or timeout while connecting or writing): the claim is released
  (sending → pending) and the caller retries after exponential backoff with jitter, at least until
  `X-RateLimit-Reset`. After `DIGEST_SEND_MAX_ATTEMPTS` claims the batch is `failed`.
- The request went out whole but no answer came (read timeout, reset while waiting): SendGrid may
  have accepted it, so the batch becomes `ambiguous`. It is never resent without an operator
  (`digest resend-ambiguous`); a batch a crash left in `sending` is made ambiguous by
  `operations.reap_stale_claims`.
- 413: the batch is split in two pending batches, both to be enqueued.
- 400 naming addresses: those deliveries fail with SendGrid's reason and the rest of the batch is
  sent again at once, still under the same claim.
- 401/403: the digest is paused with the reason; the batch goes back to pending, no retries.
- Any other refusal: the batch and its pending deliveries fail with the answer.

Nothing here knows Celery: `send_batch` returns a `SendOutcome` whose `retry_in` and `enqueue`
tell the task what to schedule. The request is built by digest/batch_message.py; the ledger's
transitions are digest/batch_ledger.py.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.orm import Session

from digest import metrics
from digest.batch_ledger import (
    cancel_batches,
    claim,
    fail_addresses,
    mark_ambiguous,
    mark_empty,
    mark_failed,
    record_sent,
    release,
)
from digest.batch_message import build_message
from digest.batch_recipients import rows_of
from digest.db import session_scope, statement_scope
from digest.email_backends import (
    AuthFailed,
    BadRecipients,
    DeliveryUnknown,
    Message,
    NotTaken,
    PayloadTooLarge,
    SendError,
    get_backend,
)
from digest.ledger_counts import count_by_status
from digest.settings import Settings, get_settings
from schema.models import Delivery, DeliveryBatch, Digest, utcnow
from schema.statuses import BatchStatus, DeliveryStatus, DigestStatus

# build_message is re-exported: callers and tests read a batch's request through this module.
__all__ = ["SendOutcome", "SendStatus", "build_message", "finish_digest_if_done", "send_batch"]

log = logging.getLogger(__name__)

# How many times one claim may drop addresses named by a 400 and send the rest again.
BAD_ADDRESS_ROUNDS = 3


class SendStatus(StrEnum):
    """What one `send_batch` call did with its batch."""

    SENT = "sent"
    RETRY = "retry"  # not taken: run again after `retry_in`
    AMBIGUOUS = "ambiguous"
    FAILED = "failed"
    SPLIT = "split"  # 413: `enqueue` holds both halves
    PAUSED = "paused"  # the API key was refused: the digest is paused
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # not claimed: finished, claimed elsewhere, or its digest not sending


@dataclass
class SendOutcome:
    """What `send_batch` did, and what the caller must schedule next."""

    batch_id: int
    status: SendStatus
    detail: str = ""
    message_id: str | None = None
    retry_in: float | None = None  # seconds: run send_batch(batch_id) again after this delay
    enqueue: list[int] = field(default_factory=list)  # batch ids to send now (after a split)


def send_batch(batch_id: int) -> SendOutcome:
    """Claim batch `batch_id`, send it as one request, and record the outcome in the ledger."""
    with session_scope() as session:
        batch = claim(session, batch_id)
        if batch is None:
            return _why_not_claimed(session, batch_id)
        attempt, digest_id = batch.attempts, batch.digest_id
        message = build_message(session, batch)
    # The claim is committed and the session closed: only now talk to SendGrid.
    if not message.recipients:  # everyone left since planning, or nothing was pending
        with session_scope() as session:
            mark_empty(session, batch_id)
        _finish(digest_id)
        return SendOutcome(batch_id, SendStatus.CANCELLED, "no recipient left to send to")
    return _send(batch_id, digest_id, attempt, message)


def _send(batch_id: int, digest_id: int, attempt: int, message: Message) -> SendOutcome:
    """One batch's request(s), counted once by outcome for the metrics (per batch, not per
    recipient): the recipients left in the message are sent, failed or ambiguous together."""
    outcome = _request(batch_id, digest_id, attempt, message)
    if outcome.status in (SendStatus.SENT, SendStatus.FAILED, SendStatus.AMBIGUOUS):
        metrics.recorder().recipients(outcome.status.value, len(message.recipients))
    return outcome


def _request(batch_id: int, digest_id: int, attempt: int, message: Message) -> SendOutcome:
    """The request, and again without the addresses a 400 named (at most BAD_ADDRESS_ROUNDS)."""
    settings = get_settings()
    backend = get_backend(settings)
    for round_ in range(BAD_ADDRESS_ROUNDS + 1):
        try:
            result = backend.send(message)
        except BadRecipients as exc:
            known = {r.email.lower() for r in message.recipients}
            named = {a.lower(): reason for a, reason in exc.addresses.items() if a.lower() in known}
            if not named or round_ == BAD_ADDRESS_ROUNDS:
                return _refused(batch_id, digest_id, str(exc) + ": " + _reasons(exc.addresses))
            if not _drop_addresses(batch_id, message, named):
                _finish(digest_id)
                return SendOutcome(batch_id, SendStatus.FAILED, "every address rejected")
            continue
        except DeliveryUnknown as exc:  # may have been accepted: never retried
            return _ambiguous(batch_id, digest_id, str(exc))
        except NotTaken as exc:
            return _not_taken(batch_id, digest_id, attempt, exc, settings)
        except PayloadTooLarge as exc:
            return _split(batch_id, digest_id, str(exc))
        except AuthFailed as exc:
            return _pause(batch_id, digest_id, str(exc))
        except SendError as exc:
            return _refused(batch_id, digest_id, str(exc))
        record_sent(batch_id, result.message_id)
        _finish(digest_id)
        return SendOutcome(batch_id, SendStatus.SENT, message_id=result.message_id)
    raise AssertionError("unreachable: the loop returns on its last round")


def _drop_addresses(batch_id: int, message: Message, named: dict[str, str]) -> bool:
    """Fail the named deliveries and take them off the message; False when none is left
    (the batch is then failed)."""
    with session_scope() as session:
        fail_addresses(session, batch_id, named)
    message.recipients = [r for r in message.recipients if r.email.lower() not in named]
    metrics.recorder().recipients(SendStatus.FAILED.value, len(named))
    log.info("batch %s: %d address(es) rejected, resending the rest", batch_id, len(named))
    if message.recipients:
        return True
    with session_scope() as session:
        mark_failed(session, batch_id, "SendGrid rejected every address")
    return False


def finish_digest_if_done(
    session: Session, digest_id: int, *, refresh: bool = False
) -> DigestStatus | None:
    """Close a `sending` digest once none of its batches is pending or sending.

    It becomes `failed` if some batch failed and none was (or may have been) accepted, else
    `sent` (a batch whose recipients all left is closed without a request); the reason line
    counts failed deliveries and ambiguous batches. The digest row is
    locked first, so two workers finishing the last two batches cannot both miss each other's
    commit. `refresh` recomputes the verdict of an already finished digest (after an operator
    resolved an ambiguous batch). Returns the new status, or None when nothing changed.
    """
    digest = session.execute(
        select(Digest).where(Digest.id == digest_id).with_for_update()
    ).scalar_one_or_none()
    allowed = (
        (DigestStatus.SENDING, DigestStatus.SENT, DigestStatus.FAILED)
        if refresh
        else (DigestStatus.SENDING,)
    )
    if digest is None or digest.status not in allowed:
        return None
    batches = count_by_status(session, DeliveryBatch, digest_id)
    if batches[BatchStatus.PENDING] or batches[BatchStatus.SENDING]:
        return None
    deliveries = count_by_status(session, Delivery, digest_id)
    accepted = batches[BatchStatus.SENT] or batches[BatchStatus.AMBIGUOUS]
    status = (
        DigestStatus.FAILED if batches[BatchStatus.FAILED] and not accepted else DigestStatus.SENT
    )
    digest.status = status
    digest.status_reason = summary(batches, deliveries, digest_id)
    if digest.finished_at is None or not refresh:
        digest.finished_at = utcnow()
    return status


def summary(batches: Counter[str], deliveries: Counter[str], digest_id: int) -> str:
    """One line an operator can act on: what went out, what failed, what is unknown."""
    parts = [f"{deliveries[DeliveryStatus.SENT]} delivered to SendGrid"]
    if deliveries[DeliveryStatus.FAILED]:
        parts.append(f"{deliveries[DeliveryStatus.FAILED]} failed")
    if deliveries[DeliveryStatus.CANCELLED]:
        parts.append(f"{deliveries[DeliveryStatus.CANCELLED]} cancelled")
    if deliveries[DeliveryStatus.SKIPPED]:
        skipped = deliveries[DeliveryStatus.SKIPPED]
        parts.append(f"{skipped} skipped (left before their batch was sent)")
    if batches[BatchStatus.AMBIGUOUS]:
        parts.append(
            f"{batches[BatchStatus.AMBIGUOUS]} batch(es) ambiguous"
            " (SendGrid may have accepted them): "
            f"decide with `digest resend-ambiguous {digest_id}`"
        )
    return "; ".join(parts)


def retry_delay(attempt: int, retry_after: float | None, settings: Settings) -> float:
    """Exponential backoff with jitter: half the step fixed, half random, so batches that failed
    together do not come back together; never before `X-RateLimit-Reset`; never above the cap."""
    step = min(
        settings.send_retry_base_delay * 2 ** max(attempt - 1, 0), settings.send_retry_max_delay
    )
    delay = step / 2 + random.uniform(0, step / 2)
    if retry_after is not None:
        spread = max(1.0, settings.send_retry_base_delay)
        delay = max(delay, retry_after + random.uniform(0, spread))
    return min(delay, settings.send_retry_max_delay)


def _why_not_claimed(session: Session, batch_id: int) -> SendOutcome:
    batch = session.get(DeliveryBatch, batch_id)
    if batch is None:
        return SendOutcome(batch_id, SendStatus.SKIPPED, "no such batch")
    digest = session.get(Digest, batch.digest_id)
    digest_status = digest.status if digest else "missing"
    if batch.status == BatchStatus.PENDING and digest_status == DigestStatus.CANCELLED:
        cancel_batches(session, [batch_id])
        return SendOutcome(batch_id, SendStatus.CANCELLED, "digest cancelled")
    if batch.status == BatchStatus.PENDING:
        return SendOutcome(batch_id, SendStatus.SKIPPED, f"digest is {digest_status}")
    if batch.status != BatchStatus.SENDING and digest_status == DigestStatus.SENDING:
        # A retry after the batch was recorded but before its digest was closed (the
        # connection dropped in between): close it now, or it would stay `sending` for good.
        finish_digest_if_done(session, batch.digest_id)
    return SendOutcome(batch_id, SendStatus.SKIPPED, f"batch already {batch.status}")


def _not_taken(
    batch_id: int, digest_id: int, attempt: int, exc: NotTaken, settings: Settings
) -> SendOutcome:
    if attempt >= settings.send_max_attempts:
        reason = f"gave up after {attempt} attempts: {exc}"
        with session_scope() as session:
            mark_failed(session, batch_id, reason)
        _finish(digest_id)
        return SendOutcome(batch_id, SendStatus.FAILED, reason)
    delay = retry_delay(attempt, exc.retry_after, settings)
    with session_scope() as session:
        released = release(session, batch_id, f"attempt {attempt}: {exc}; retry in {delay:.1f}s")
    if released is None:  # the reaper already called it ambiguous: leave that to the operator
        return SendOutcome(batch_id, SendStatus.AMBIGUOUS, f"claim lost while waiting: {exc}")
    if released == BatchStatus.CANCELLED:
        return SendOutcome(batch_id, SendStatus.CANCELLED, "digest cancelled during the request")
    log.warning("batch %s not taken (%s): retry in %.1fs", batch_id, exc, delay)
    return SendOutcome(batch_id, SendStatus.RETRY, str(exc), retry_in=delay)


def _ambiguous(batch_id: int, digest_id: int, reason: str) -> SendOutcome:
    with session_scope() as session:
        mark_ambiguous(session, batch_id, reason)
    log.error("batch %s ambiguous: %s", batch_id, reason)
    _finish(digest_id)
    return SendOutcome(batch_id, SendStatus.AMBIGUOUS, reason)


def _split(batch_id: int, digest_id: int, reason: str) -> SendOutcome:
    """Move the second half of the pending deliveries to a new batch; both become pending."""
    with session_scope() as session:
        # Lock the digest: the next seq must not be taken by a concurrent split.
        session.execute(select(Digest.id).where(Digest.id == digest_id).with_for_update())
        batch = session.get(DeliveryBatch, batch_id)
        if batch is None or batch.status != BatchStatus.SENDING:
            return SendOutcome(batch_id, SendStatus.SKIPPED, "claim lost before the split")
        ids = session.execute(
            select(Delivery.id, Delivery.subscriber_id)
            .where(rows_of(session, [batch_id]), Delivery.status == DeliveryStatus.PENDING)
            .order_by(Delivery.id)
        ).all()
        if len(ids) < 2:
            mark_failed(session, batch_id, f"{reason} (a single message is too large)")
            split = None
        else:
            moved = ids[len(ids) // 2 :]
            seq = session.scalar(
                select(func.max(DeliveryBatch.seq)).where(DeliveryBatch.digest_id == digest_id)
            )
            half = DeliveryBatch(
                digest_id=digest_id,
                segment_id=batch.segment_id,
                seq=(seq or 0) + 1,
                status=BatchStatus.PENDING,
                size=len(moved),
                # Rows written, claims counted; rows_of finds the rows through this array.
                attempts=batch.attempts,
                subscriber_ids=sorted(subscriber_id for _, subscriber_id in moved),
            )
            session.add(half)
            session.flush()
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_([delivery_id for delivery_id, _ in moved]))
                .values(batch_id=half.id)
                .execution_options(synchronize_session=False)
            )
            batch.size -= len(moved)
            batch.status = BatchStatus.PENDING
            batch.error = f"{reason}: split into batches {batch_id} and {half.id}"
            split = half.id
    if split is None:
        _finish(digest_id)
        return SendOutcome(batch_id, SendStatus.FAILED, reason)
    log.warning("batch %s too large: split, new batch %s", batch_id, split)
    return SendOutcome(batch_id, SendStatus.SPLIT, reason, enqueue=[batch_id, split])


def _pause(batch_id: int, digest_id: int, reason: str) -> SendOutcome:
    with session_scope() as session:
        release(session, batch_id, reason)
        session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.status == DigestStatus.SENDING)
            .values(
                status=DigestStatus.PAUSED,
                status_reason=f"{reason}; fix SENDGRID_API_KEY, then `digest resume {digest_id}`",
            )
            .execution_options(synchronize_session=False)
        )
    log.error("digest %s paused: %s", digest_id, reason)
    return SendOutcome(batch_id, SendStatus.PAUSED, reason)


def _refused(batch_id: int, digest_id: int, reason: str) -> SendOutcome:
    with session_scope() as session:
        mark_failed(session, batch_id, reason)
    _finish(digest_id)
    return SendOutcome(batch_id, SendStatus.FAILED, reason)


def _finish(digest_id: int) -> None:
    """In its own transaction, after the batch's own change is committed (see the lock above).

    Most batches are not the last: an unlocked look for a pending or sending batch ends it
    there, without the digest's row lock and the counts every batch used to queue on. That is
    safe because each caller has committed its batch first: of the last two batches to finish,
    the later look runs after both commits, sees none open and takes the locked path.
    """
    with statement_scope() as connection:  # one read: no ping, BEGIN or COMMIT round trips
        if _open_batches_remain(connection, digest_id):
            return
    with session_scope() as session:
        finish_digest_if_done(session, digest_id)


# Whether any batch of the digest is still pending or sending (index on digest, status): after
# every batch, so named SQL compiled once (see batch_ledger.CLAIM).
OPEN_BATCHES_REMAIN = text(
    f"""
    SELECT EXISTS (SELECT 1 FROM delivery_batches
                   WHERE digest_id = :digest_id
                     AND status IN ('{BatchStatus.PENDING}', '{BatchStatus.SENDING}'))
    """
)


def _open_batches_remain(connection: Connection, digest_id: int) -> bool:
    return bool(connection.execute(OPEN_BATCHES_REMAIN, {"digest_id": digest_id}).scalar())


def _reasons(addresses: dict[str, str]) -> str:
    return "; ".join(f"{a}: {r}" for a, r in list(addresses.items())[:5])
