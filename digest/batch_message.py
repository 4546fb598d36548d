"""A claimed batch's request: the segment's shared content, one recipient per pending delivery.

Recipients come from one statement, never one per address: on a batch's first claim the one
that writes its delivery rows from the planned ids (digest/batch_recipients.py), on a retry
the batch's pending deliveries joined to subscribers. Either way the list is checked again
under the claim: a subscriber who left since planning is skipped.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, select, text, type_coerce, update
from sqlalchemy.orm import Session

from digest import tokens
from digest.batch_ledger import ClaimedBatch
from digest.batch_recipients import rows_of, write_deliveries
from digest.email_backends import Message, Recipient
from digest.substitution import Placeholders
from schema.models import Delivery, Subscriber
from schema.statuses import DeliveryStatus, DigestKind, SubscriberStatus

# What every recipient of a batch shares: the segment's content and the digest's kind. Named
# SQL, compiled once: it runs once per 1,000 recipients (see batch_ledger.CLAIM).
BATCH_CONTENT = text(
    """
    SELECT d.kind, s.subject, s.html, s.text, s.placeholder_nonce
    FROM digest_segments s JOIN digests d ON d.id = s.digest_id
    WHERE s.id = :segment_id AND d.id = :digest_id
    """
)


def _pending(session: Session, batch_id: int) -> list[tuple[Any, ...]]:
    """The batch's pending deliveries with what their subscriber row says now, as the driver's
    own tuples (delivery id, subscriber id, email, name, status, paused): no result `Row` per
    recipient, and the status as plain text (`type_coerce`), not an enum member (py-spy,
    README). `paused` is the driver's: a bool on PostgreSQL, 0/1 on SQLite."""
    result = session.connection().execute(
        select(
            Delivery.id,
            Delivery.subscriber_id,
            Delivery.email,
            Subscriber.name,
            type_coerce(Subscriber.status, String),
            Subscriber.paused,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(rows_of(session, [batch_id]), Delivery.status == DeliveryStatus.PENDING)
        .order_by(Delivery.id)
    )
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    return rows


def build_message(session: Session, batch: ClaimedBatch) -> Message:
    """The batch's request: the segment's shared content, one recipient per pending delivery.

    A subscriber who unsubscribed, paused, bounced, complained or was erased since planning (a
    retried batch may be days old) is left out and their delivery marked `skipped`, so nothing
    goes to an address that left.
    """
    segment = (
        session.connection()
        .execute(BATCH_CONTENT, {"segment_id": batch.segment_id, "digest_id": batch.digest_id})
        .one_or_none()
    )
    if segment is None:
        raise LookupError(f"batch {batch.id} has no digest or segment")
    test = segment.kind == DigestKind.TEST
    # A test copy goes to the operator's address, which may be a pending placeholder row.
    mailable = (
        (SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value)
        if test
        else (SubscriberStatus.ACTIVE.value,)
    )
    keys = Placeholders.from_nonce(segment.placeholder_nonce)
    digest_id = batch.digest_id
    links = tokens.recipient_links(digest_id)
    recipients, left = [], []
    rows = write_deliveries(session, batch.id)
    if rows is None:
        rows = _pending(session, batch.id)
    for delivery_id, subscriber_id, email, name, status, paused in rows:
        if status not in mailable or (paused and not test):
            left.append(delivery_id)
        else:
            recipients.append(
                recipient_for(digest_id, keys, delivery_id, subscriber_id, email, name, links)
            )
    if left:
        skip_departed(session, left)
    return Message(
        subject=segment.subject,
        html=segment.html,
        text=segment.text,
        recipients=recipients,
        categories=[f"{segment.kind}-digest", f"digest-{digest_id}"],
        custom_args={"batch_id": str(batch.id)},
    )


def skip_departed(session: Session, delivery_ids: list[int]) -> None:
    """Deliveries to people who left after planning: `skipped`, neither sent nor failed."""
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SKIPPED, error="no longer subscribed when the batch was sent")
        .execution_options(synchronize_session=False)
    )


def recipient_for(
    digest_id: int,
    keys: Placeholders,
    delivery_id: int,
    subscriber_id: int,
    email: str,
    name: str | None,
    links: tokens.RecipientLinks | None = None,
) -> Recipient:
    """One personalization: name, signed links and the reader token (one signature for all
    of this digest's vote links) as substitutions, one-click unsubscribe. `links` is the
    batch's signing, set up once (build_message); without it, it is set up here."""
    links = links or tokens.recipient_links(digest_id)
    unsubscribe, preferences, reader = links.links(subscriber_id, reader=bool(keys.reader))
    return Recipient(
        email=email,
        name=name or None,
        substitutions=keys.values(name, unsubscribe, preferences, reader),
        custom_args={"digest_id": str(digest_id), "delivery_id": str(delivery_id)},
        unsubscribe_url=unsubscribe,
    )
