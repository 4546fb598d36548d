"""Send one planned batch exactly once: claim it, send it, write down what SendGrid said.

SendGrid has no idempotency key, so the database is the ledger. A batch is claimed with one
conditional UPDATE (pending → sending, only while its digest is `sending`) and the claim is
committed before the request; no session stays open while the request is in flight. A duplicated
or redelivered task finds the batch already claimed or finished and does nothing.

What each answer means for the batch:

- 202: the batch and its pending deliveries become `sent`, with SendGrid's `X-Message-Id`.
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

Nothing here knows Celery: `send_batch` returns a `BatchOutcome` whose `retry_in` and `enqueue`
tell the task what to schedule.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from digest import tokens
from digest.db import session_scope
from digest.email_backends import (
    AuthFailed,
    BadRecipients,
    DeliveryUnknown,
    Message,
    PayloadTooLarge,
    Recipient,
    SendError,
    TransientSendError,
    get_backend,
)
from digest.settings import Settings, get_settings
from digest.substitution import Placeholders
from schema.models import Delivery, DeliveryBatch, Digest, DigestSegment, Subscriber, utcnow

log = logging.getLogger(__name__)

# How many times one claim may drop addresses named by a 400 and send the rest again.
BAD_ADDRESS_ROUNDS = 3


@dataclass
class BatchOutcome:
    """What `send_batch` did, and what the caller must schedule next."""

    batch_id: int
    status: str  # sent | retry | ambiguous | failed | split | paused | cancelled | skipped
    detail: str = ""
    message_id: str | None = None
    retry_in: float | None = None  # seconds: run send_batch(batch_id) again after this delay
    enqueue: list[int] = field(default_factory=list)  # batch ids to send now (after a split)


def send_batch(batch_id: int) -> BatchOutcome:
    """Claim batch `batch_id`, send it as one request, and record the outcome in the ledger."""
    settings = get_settings()
    with session_scope() as session:
        if not _claim(session, batch_id):
            return _why_not_claimed(session, batch_id)
        batch = session.get(DeliveryBatch, batch_id)
        assert batch is not None  # we just claimed it
        attempt, digest_id = batch.attempts, batch.digest_id
        message = build_message(session, batch)
    # The claim is committed and the session closed: only now talk to SendGrid.
    if not message.recipients:  # everyone left since planning, or nothing was pending
        with session_scope() as session:
            _mark_empty(session, batch_id)
        _finish(digest_id)
        return BatchOutcome(batch_id, "cancelled", "no recipient left to send to")

    backend = get_backend(settings)
    for _round in range(BAD_ADDRESS_ROUNDS + 1):
        try:
            result = backend.send(message)
        except BadRecipients as exc:
            known = {r.email.lower() for r in message.recipients}
            named = {a.lower(): reason for a, reason in exc.addresses.items() if a.lower() in known}
            if not named or _round == BAD_ADDRESS_ROUNDS:
                return _refused(batch_id, digest_id, str(exc) + ": " + _reasons(exc.addresses))
            with session_scope() as session:
                _fail_addresses(session, batch_id, named)
            message.recipients = [r for r in message.recipients if r.email.lower() not in named]
            log.info("batch %s: %d address(es) rejected, resending the rest", batch_id, len(named))
            if not message.recipients:
                with session_scope() as session:
                    _mark_failed(session, batch_id, "SendGrid rejected every address")
                _finish(digest_id)
                return BatchOutcome(batch_id, "failed", "every address rejected")
            continue
        except DeliveryUnknown as exc:  # before its parent class: this one is not retried
            return _ambiguous(batch_id, digest_id, str(exc))
        except TransientSendError as exc:
            return _not_taken(batch_id, digest_id, attempt, exc, settings)
        except PayloadTooLarge as exc:
            return _split(batch_id, digest_id, str(exc))
        except AuthFailed as exc:
            return _pause(batch_id, digest_id, str(exc))
        except SendError as exc:
            return _refused(batch_id, digest_id, str(exc))
        _record_sent(batch_id, result.message_id)
        _finish(digest_id)
        return BatchOutcome(batch_id, "sent", message_id=result.message_id)
    raise AssertionError("unreachable: the loop returns on its last round")


def finish_digest_if_done(session: Session, digest_id: int, *, refresh: bool = False) -> str | None:
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
    allowed = ("sending", "sent", "failed") if refresh else ("sending",)
    if digest is None or digest.status not in allowed:
        return None
    batches = _counts(session, DeliveryBatch, digest_id)
    if batches.get("pending") or batches.get("sending"):
        return None
    deliveries = _counts(session, Delivery, digest_id)
    accepted = batches.get("sent") or batches.get("ambiguous")
    status = "failed" if batches.get("failed") and not accepted else "sent"
    digest.status = status
    digest.status_reason = summary(batches, deliveries, digest_id)
    if digest.finished_at is None or not refresh:
        digest.finished_at = utcnow()
    return status


def summary(batches: dict[str, int], deliveries: dict[str, int], digest_id: int) -> str:
    """One line an operator can act on: what went out, what failed, what is unknown."""
    parts = [f"{deliveries.get('sent', 0)} delivered to SendGrid"]
    if deliveries.get("failed"):
        parts.append(f"{deliveries['failed']} failed")
    if deliveries.get("cancelled"):
        parts.append(f"{deliveries['cancelled']} cancelled")
    if deliveries.get("skipped"):
        parts.append(f"{deliveries['skipped']} skipped (left before their batch was sent)")
    if batches.get("ambiguous"):
        parts.append(
            f"{batches['ambiguous']} batch(es) ambiguous (SendGrid may have accepted them): "
            f"decide with `digest resend-ambiguous {digest_id}`"
        )
    return "; ".join(parts)


def build_message(session: Session, batch: DeliveryBatch) -> Message:
    """The batch's request: the segment's shared content, one recipient per pending delivery.

    Recipients come from one query (deliveries joined to subscribers), never one per address,
    and the list is checked again here, under the claim: a subscriber who unsubscribed, paused,
    bounced, complained or was erased since planning (a retried batch may be days old) is left
    out and their delivery marked `skipped`, so nothing goes to an address that left.
    """
    digest = session.get(Digest, batch.digest_id)
    segment = session.get(DigestSegment, batch.segment_id)
    if digest is None or segment is None:
        raise LookupError(f"batch {batch.id} has no digest or segment")
    rows = session.execute(
        select(
            Delivery.id,
            Delivery.subscriber_id,
            Delivery.email,
            Subscriber.name,
            Subscriber.status,
            Subscriber.paused,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.batch_id == batch.id, Delivery.status == "pending")
        .order_by(Delivery.id)
    ).all()
    # A test copy goes to the operator's address, which may be a pending placeholder row.
    mailable = ("active", "pending") if digest.kind == "test" else ("active",)
    keys = Placeholders.from_nonce(segment.placeholder_nonce)
    recipients, left = [], []
    for delivery_id, subscriber_id, email, name, status, paused in rows:
        if status not in mailable or (paused and digest.kind != "test"):
            left.append(delivery_id)
        else:
            recipients.append(
                recipient_for(digest.id, keys, delivery_id, subscriber_id, email, name)
            )
    if left:
        skip_departed(session, left)
    return Message(
        subject=segment.subject,
        html=segment.html,
        text=segment.text,
        recipients=recipients,
        categories=[f"{digest.kind}-digest", f"digest-{digest.id}"],
        custom_args={"batch_id": str(batch.id)},
    )


def skip_departed(session: Session, delivery_ids: list[int]) -> None:
    """Deliveries to people who left after planning: `skipped`, neither sent nor failed."""
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.status == "pending")
        .values(status="skipped", error="no longer subscribed when the batch was sent")
        .execution_options(synchronize_session=False)
    )


def recipient_for(
    digest_id: int,
    keys: Placeholders,
    delivery_id: int,
    subscriber_id: int,
    email: str,
    name: str | None,
) -> Recipient:
    """One personalization: name and signed links as substitutions, one-click unsubscribe."""
    unsubscribe, preferences = tokens.manage_urls(subscriber_id)
    return Recipient(
        email=email,
        name=name or None,
        substitutions=keys.values(name, unsubscribe, preferences),
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        custom_args={"digest_id": str(digest_id), "delivery_id": str(delivery_id)},
    )


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


# --- the ledger's transitions -----------------------------------------------------------------


def _claim(session: Session, batch_id: int) -> bool:
    """pending → sending in one conditional UPDATE; rowcount 1 means this worker owns it.

    The digest's status is part of the condition, so a cancelled or paused digest stops here.
    """
    digest_is_sending = exists().where(
        Digest.id == DeliveryBatch.digest_id, Digest.status == "sending"
    )
    result = session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == "pending", digest_is_sending)
        .values(status="sending", claimed_at=utcnow(), attempts=DeliveryBatch.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _why_not_claimed(session: Session, batch_id: int) -> BatchOutcome:
    batch = session.get(DeliveryBatch, batch_id)
    if batch is None:
        return BatchOutcome(batch_id, "skipped", "no such batch")
    digest = session.get(Digest, batch.digest_id)
    digest_status = digest.status if digest else "missing"
    if batch.status == "pending" and digest_status == "cancelled":
        _cancel_batches(session, [batch_id])
        return BatchOutcome(batch_id, "cancelled", "digest cancelled")
    if batch.status == "pending":
        return BatchOutcome(batch_id, "skipped", f"digest is {digest_status}")
    if batch.status != "sending" and digest_status == "sending":
        # A retry after the batch was recorded but before its digest was closed (the
        # connection dropped in between): close it now, or it would stay `sending` for good.
        finish_digest_if_done(session, batch.digest_id)
    return BatchOutcome(batch_id, "skipped", f"batch already {batch.status}")


def _record_sent(batch_id: int, message_id: str | None, attempts: int = 4) -> None:
    """Write the 202 down, on a fresh connection if the first one drops.

    SendGrid took the message; losing that fact to a dropped connection (failover,
    pg_terminate_backend) would make a sent batch ambiguous. The UPDATE is idempotent.
    """
    for attempt in range(1, attempts + 1):
        try:
            with session_scope() as session:
                _mark_sent(session, batch_id, message_id)
            return
        except OperationalError:
            if attempt == attempts:
                raise
            log.warning("batch %s: recording the 202 failed, retrying", batch_id, exc_info=True)
            time.sleep(0.2 * 2**attempt)


def _mark_sent(session: Session, batch_id: int, message_id: str | None) -> None:
    # `ambiguous` too: if the reaper gave up on us while SendGrid was slow, the 202 is the truth.
    session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status.in_(("sending", "ambiguous")))
        .values(status="sent", message_id=message_id, sent_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Delivery)
        .where(Delivery.batch_id == batch_id, Delivery.status == "pending")
        .values(status="sent")
        .execution_options(synchronize_session=False)
    )


def _mark_failed(session: Session, batch_id: int, reason: str) -> None:
    session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == "sending")
        .values(status="failed", error=reason)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Delivery)
        .where(Delivery.batch_id == batch_id, Delivery.status == "pending")
        .values(status="failed", error=reason)
        .execution_options(synchronize_session=False)
    )


def _mark_empty(session: Session, batch_id: int) -> None:
    """A claimed batch with nobody left to mail: closed without a request, not a failure."""
    session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == "sending")
        .values(status="cancelled", error="no recipient left to send to")
        .execution_options(synchronize_session=False)
    )


def _release(session: Session, batch_id: int, reason: str) -> str | None:
    """sending → pending: SendGrid did not take the message, another claim may send it.

    If the digest was cancelled while the request was out, the batch is cancelled instead
    (cancel only touches pending batches, so it could not see this one). Returns the batch's new
    status, or None when this worker no longer held the claim.
    """
    result = session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == "sending")
        .values(status="pending", error=reason)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    digest_status = session.scalar(
        select(Digest.status)
        .join(DeliveryBatch, DeliveryBatch.digest_id == Digest.id)
        .where(DeliveryBatch.id == batch_id)
    )
    if digest_status == "cancelled":
        _cancel_batches(session, [batch_id])
        return "cancelled"
    return "pending"


def _cancel_batches(session: Session, batch_ids: list[int]) -> None:
    session.execute(
        update(DeliveryBatch)
        .where(DeliveryBatch.id.in_(batch_ids), DeliveryBatch.status == "pending")
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Delivery)
        .where(Delivery.batch_id.in_(batch_ids), Delivery.status == "pending")
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    )


def _fail_addresses(session: Session, batch_id: int, named: dict[str, str]) -> None:
    """Deliveries SendGrid named as bad fail with its reason; the batch keeps the rest."""
    rows = session.execute(
        select(Delivery.id, Delivery.email).where(
            Delivery.batch_id == batch_id,
            Delivery.status == "pending",
            func.lower(Delivery.email).in_(list(named)),
        )
    ).all()
    for delivery_id, email in rows:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status="failed", error=f"rejected by SendGrid: {named[email.lower()]}")
            .execution_options(synchronize_session=False)
        )


def _not_taken(
    batch_id: int, digest_id: int, attempt: int, exc: TransientSendError, settings: Settings
) -> BatchOutcome:
    if attempt >= settings.send_max_attempts:
        reason = f"gave up after {attempt} attempts: {exc}"
        with session_scope() as session:
            _mark_failed(session, batch_id, reason)
        _finish(digest_id)
        return BatchOutcome(batch_id, "failed", reason)
    delay = retry_delay(attempt, exc.retry_after, settings)
    with session_scope() as session:
        released = _release(session, batch_id, f"attempt {attempt}: {exc}; retry in {delay:.1f}s")
    if released is None:  # the reaper already called it ambiguous: leave that to the operator
        return BatchOutcome(batch_id, "ambiguous", f"claim lost while waiting: {exc}")
    if released == "cancelled":
        return BatchOutcome(batch_id, "cancelled", "digest cancelled during the request")
    log.warning("batch %s not taken (%s): retry in %.1fs", batch_id, exc, delay)
    return BatchOutcome(batch_id, "retry", str(exc), retry_in=delay)


def _ambiguous(batch_id: int, digest_id: int, reason: str) -> BatchOutcome:
    with session_scope() as session:
        session.execute(
            update(DeliveryBatch)
            .where(DeliveryBatch.id == batch_id, DeliveryBatch.status == "sending")
            .values(status="ambiguous", error=reason)
            .execution_options(synchronize_session=False)
        )
    log.error("batch %s ambiguous: %s", batch_id, reason)
    _finish(digest_id)
    return BatchOutcome(batch_id, "ambiguous", reason)


def _split(batch_id: int, digest_id: int, reason: str) -> BatchOutcome:
    """Move the second half of the pending deliveries to a new batch; both become pending."""
    with session_scope() as session:
        # Lock the digest: the next seq must not be taken by a concurrent split.
        session.execute(select(Digest.id).where(Digest.id == digest_id).with_for_update())
        batch = session.get(DeliveryBatch, batch_id)
        ids = list(
            session.scalars(
                select(Delivery.id)
                .where(Delivery.batch_id == batch_id, Delivery.status == "pending")
                .order_by(Delivery.id)
            )
        )
        if batch is None or batch.status != "sending":
            return BatchOutcome(batch_id, "skipped", "claim lost before the split")
        if len(ids) < 2:
            _mark_failed(session, batch_id, f"{reason} (a single message is too large)")
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
                status="pending",
                size=len(moved),
            )
            session.add(half)
            session.flush()
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(moved))
                .values(batch_id=half.id)
                .execution_options(synchronize_session=False)
            )
            batch.size -= len(moved)
            batch.status = "pending"
            batch.error = f"{reason}: split into batches {batch_id} and {half.id}"
            split = half.id
    if split is None:
        _finish(digest_id)
        return BatchOutcome(batch_id, "failed", reason)
    log.warning("batch %s too large: split, new batch %s", batch_id, split)
    return BatchOutcome(batch_id, "split", reason, enqueue=[batch_id, split])


def _pause(batch_id: int, digest_id: int, reason: str) -> BatchOutcome:
    with session_scope() as session:
        _release(session, batch_id, reason)
        session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.status == "sending")
            .values(
                status="paused",
                status_reason=f"{reason}; fix SENDGRID_API_KEY, then `digest resume {digest_id}`",
            )
            .execution_options(synchronize_session=False)
        )
    log.error("digest %s paused: %s", digest_id, reason)
    return BatchOutcome(batch_id, "paused", reason)


def _refused(batch_id: int, digest_id: int, reason: str) -> BatchOutcome:
    with session_scope() as session:
        _mark_failed(session, batch_id, reason)
    _finish(digest_id)
    return BatchOutcome(batch_id, "failed", reason)


def _finish(digest_id: int) -> None:
    """In its own transaction, after the batch's own change is committed (see the lock above)."""
    with session_scope() as session:
        finish_digest_if_done(session, digest_id)


def _counts(session: Session, model: type[DeliveryBatch] | type[Delivery], digest_id: int) -> dict:
    rows = session.execute(
        select(model.status, func.count())
        .where(model.digest_id == digest_id)
        .group_by(model.status)
    ).all()
    return {status: count for status, count in rows}


def _reasons(addresses: dict[str, str]) -> str:
    return "; ".join(f"{a}: {r}" for a, r in list(addresses.items())[:5])
