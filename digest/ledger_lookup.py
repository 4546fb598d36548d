"""The ledger, by address or by subscriber: did this person get this digest, when, with which
message id, and what SendGrid told us happened next. Read-only, for the console's digest page
(`find_recipient`) and subscriber page (`deliveries_to_subscriber`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.batch_recipients import planned_status, unclaimed_batches_of
from digest.ledger_counts import delivery_status
from schema.models import Delivery, DeliveryBatch, Digest, EmailEvent, Subscriber


@dataclass(frozen=True)
class EventLine:
    event: str
    occurred_at: str
    detail: str | None  # bounce class or clicked URL


@dataclass(frozen=True)
class RecipientTrace:
    delivery_id: int | None  # None: planned in a batch not yet claimed (no delivery row yet)
    email: str
    status: str
    error: str | None
    batch_id: int | None
    batch_status: str | None
    sent_at: str | None
    message_id: str | None
    events: list[EventLine]


def find_recipient(session: Session, digest_id: int, address: str) -> list[RecipientTrace]:
    """The digest's deliveries to `address` (case-insensitive, exact), each with its events.

    Found through the subscriber (the unique index on the lower-cased address) and the ledger's
    unique (digest, subscriber) key: two index probes, under a millisecond on a 1M-recipient
    digest, where matching the deliveries' own address column read the whole digest (a second
    and more). A delivery's address is its subscriber's when its batch was claimed, and only
    erasure changes either, to the same placeholder; the address is still compared, so no other
    row can match. A recipient whose batch is not yet claimed is found in the batch's planned
    ids instead (the digest's batches, by their digest index) and reads as pending.
    """
    needle = address.strip().lower()
    if not needle or not needle.isprintable():  # no stored address has control characters
        return []
    subscriber_ids = select(Subscriber.id).where(func.lower(Subscriber.email) == needle)
    rows = session.execute(
        select(Delivery, DeliveryBatch, delivery_status())
        .outerjoin(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
        .where(
            Delivery.digest_id == digest_id,
            Delivery.subscriber_id.in_(subscriber_ids.scalar_subquery()),
            func.lower(Delivery.email) == needle,
        )
        .order_by(Delivery.id)
    ).all()
    traces = []
    for delivery, batch, status in rows:
        events = session.scalars(
            select(EmailEvent)
            .where(EmailEvent.delivery_id == delivery.id)
            .order_by(EmailEvent.occurred_at, EmailEvent.id)
        )
        traces.append(
            RecipientTrace(
                delivery_id=delivery.id,
                email=delivery.email,
                status=status,
                error=delivery.error,
                batch_id=batch.id if batch else None,
                batch_status=batch.status if batch else None,
                sent_at=batch.sent_at.isoformat() if batch and batch.sent_at else None,
                message_id=batch.message_id if batch else None,
                events=[
                    EventLine(e.event, e.occurred_at.isoformat(), e.bounce_class or e.url)
                    for e in events
                ],
            )
        )
    return traces + _planned_traces(session, digest_id, needle)


def _planned_traces(session: Session, digest_id: int, needle: str) -> list[RecipientTrace]:
    """The subscribers with this address planned in the digest's batches not yet claimed."""
    traces = []
    for subscriber_id, email in session.execute(
        select(Subscriber.id, Subscriber.email).where(func.lower(Subscriber.email) == needle)
    ):
        for batch in unclaimed_batches_of(session, subscriber_id, digest_id):
            traces.append(
                RecipientTrace(
                    delivery_id=None,
                    email=email,
                    status=planned_status(batch.status),
                    error=None,
                    batch_id=batch.id,
                    batch_status=batch.status,
                    sent_at=None,
                    message_id=None,
                    events=[],
                )
            )
    return traces


@dataclass(frozen=True)
class SubscriberDelivery:
    """One digest a subscriber was (to be) sent, and SendGrid's events about it."""

    digest_id: int
    kind: str
    subject: str | None
    edition: str | None
    planned_at: datetime
    delivery_id: int | None  # None: planned in a batch not yet claimed
    status: str
    error: str | None
    batch_status: str | None
    sent_at: datetime | None
    message_id: str | None
    events: list[EventLine]


def deliveries_to_subscriber(session: Session, subscriber_id: int) -> list[SubscriberDelivery]:
    """Every delivery row of one subscriber, newest digest first, each with its events.

    `deliveries` is keyed (digest_id, subscriber_id) and has no index on the subscriber alone
    (a million rows a week, written at claims; each index costs it). Joining from `digests` (a
    few hundred rows) lets the planner probe that unique key once per digest instead of
    scanning the ledger. The events come in one more query, by `ix_email_events_delivery_id`.
    """
    rows = session.execute(
        select(
            Digest.id,
            Digest.kind,
            Digest.subject,
            Digest.edition,
            Digest.created_at,
            Delivery.id,
            delivery_status(),
            Delivery.error,
            DeliveryBatch.status,
            DeliveryBatch.sent_at,
            DeliveryBatch.message_id,
        )
        .join(Delivery, Delivery.digest_id == Digest.id)
        .outerjoin(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Digest.id.desc())
    ).all()
    events = _events_by_delivery(session, [row[5] for row in rows])
    # The columns above are SubscriberDelivery's fields, in order; then its events.
    written = [SubscriberDelivery(*row, events=events.get(row[5], [])) for row in rows]
    planned = [
        SubscriberDelivery(
            digest_id=batch.digest.id,
            kind=batch.digest.kind,
            subject=batch.digest.subject,
            edition=batch.digest.edition,
            planned_at=batch.digest.created_at,
            delivery_id=None,
            status=planned_status(batch.status),
            error=None,
            batch_status=batch.status,
            sent_at=None,
            message_id=None,
            events=[],
        )
        for batch in unclaimed_batches_of(session, subscriber_id)
    ]
    return sorted(written + planned, key=lambda d: d.digest_id, reverse=True)


def _events_by_delivery(session: Session, delivery_ids: list[int]) -> dict[int, list[EventLine]]:
    """SendGrid's events of these deliveries, oldest first, a thousand ids per query."""
    events: dict[int, list[EventLine]] = defaultdict(list)
    for start in range(0, len(delivery_ids), 1000):
        for e in session.scalars(
            select(EmailEvent)
            .where(EmailEvent.delivery_id.in_(delivery_ids[start : start + 1000]))
            .order_by(EmailEvent.occurred_at, EmailEvent.id)
        ):
            detail = e.bounce_class or e.url
            if e.machine:
                detail = f"{detail} (machine)" if detail else "machine"
            events[e.delivery_id].append(EventLine(e.event, e.occurred_at.isoformat(), detail))
    return events
