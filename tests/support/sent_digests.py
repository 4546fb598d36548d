"""A digest that has been sent, written straight into the ledger (for event and stats tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schema.models import Delivery, DeliveryBatch, Digest, DigestSegment, Subscriber
from tests.support.signed_webhooks import sg_event

SENT_AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T0 = int(SENT_AT.timestamp())


@dataclass
class SentDigest:
    digest_id: int
    message_id: str  # the batch's X-Message-Id
    deliveries: dict[str, int]  # address -> delivery id
    subscribers: dict[str, int]  # address -> subscriber id


def sent_digest(
    session: Session,
    emails: list[str],
    *,
    message_id: str = "batchmsg1",
    batch_status: str = "sent",
) -> SentDigest:
    """One digest, one segment, one batch sent at SENT_AT, one delivery per address."""
    digest = Digest(kind="adhoc", status="sent", subject="This week's verdicts", recipients=0)
    session.add(digest)
    session.flush()
    segment = DigestSegment(
        digest_id=digest.id, segment_key="all", subject="s", html="<p>h</p>", text="t"
    )
    session.add(segment)
    session.flush()
    batch = DeliveryBatch(
        digest_id=digest.id,
        segment_id=segment.id,
        seq=1,
        status=batch_status,
        size=len(emails),
        message_id=message_id if batch_status == "sent" else None,
        sent_at=SENT_AT if batch_status == "sent" else None,
    )
    session.add(batch)
    session.flush()
    deliveries, subscribers = {}, {}
    for email in emails:
        sub = _subscriber(session, email)
        delivery = Delivery(
            digest_id=digest.id,
            batch_id=batch.id,
            subscriber_id=sub.id,
            email=email,
            status="sent" if batch_status == "sent" else "pending",
        )
        session.add(delivery)
        session.flush()
        deliveries[email] = delivery.id
        subscribers[email] = sub.id
    digest.recipients = len(emails)
    session.commit()
    return SentDigest(digest.id, message_id, deliveries, subscribers)


def event_for(
    sent: SentDigest, event: str, email: str, at: int = T0 + 60, **extra: Any
) -> dict[str, Any]:
    """A SendGrid event about `email`'s delivery of `sent`, as SendGrid posts it: the delivery
    and digest ids of the message's custom_args, and its message id."""
    return sg_event(
        event,
        email,
        timestamp=at,
        delivery_id=sent.deliveries[email],
        digest_id=sent.digest_id,
        message_id=sent.message_id,
        **extra,
    )


def _subscriber(session: Session, email: str) -> Subscriber:
    found = session.scalar(select(Subscriber).where(func.lower(Subscriber.email) == email.lower()))
    if found is None:
        found = Subscriber(email=email, name=email.split("@")[0].title(), status="active")
        session.add(found)
        session.flush()
    return found
