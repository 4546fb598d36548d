"""One person's data as a JSON document (GDPR access): the row, their deliveries, events and
Ship/Skip verdicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from digest.batch_recipients import planned_status, unclaimed_batches_of
from digest.ledger_counts import delivery_status
from digest.votes import verdicts_of
from schema.models import Delivery, DeliveryBatch, Digest, EmailEvent, Subscriber

CHUNK = 1000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _own_events(subscriber: Subscriber, delivery_ids: list[int]) -> Any:
    """The person's events: linked to one of their deliveries, or sent for their address."""
    mine = [func.lower(EmailEvent.email) == subscriber.email.lower()]
    for start in range(0, len(delivery_ids), CHUNK):
        mine.append(EmailEvent.delivery_id.in_(delivery_ids[start : start + CHUNK]))
    return or_(*mine)


def export_data(session: Session, subscriber_id: int) -> dict[str, Any] | None:
    """Everything stored about one subscriber (GDPR access): the row, deliveries and events.

    A dict, not a dataclass, because it IS the exported JSON document (served as is). Events
    are the person's own (type, time, digest, link, machine flag), never the raw SendGrid
    payload, which holds SendGrid's ids and IPs rather than anything the person gave us.
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    deliveries = _deliveries(session, subscriber)
    delivery_ids = [d["id"] for d in deliveries if d["id"] is not None]
    events = session.scalars(
        select(EmailEvent)
        .where(_own_events(subscriber, delivery_ids))
        .order_by(EmailEvent.occurred_at, EmailEvent.id)
    ).all()
    return {
        "subscriber": _subscriber_fields(subscriber),
        "deliveries": deliveries,
        "events": [
            {
                "event": event.event,
                "occurred_at": _iso(event.occurred_at),
                "digest_id": event.digest_id,
                "delivery_id": event.delivery_id,
                "bounce_class": event.bounce_class,
                "url": event.url,
                "machine": event.machine,
            }
            for event in events
        ],
        "verdicts": verdicts_of(session, subscriber_id),
    }


def _deliveries(session: Session, subscriber: Subscriber) -> list[dict[str, Any]]:
    """The person's deliveries as exported: their rows, then the digests planned for them in
    batches not yet claimed (no row yet, so no id)."""
    rows = session.execute(
        select(Delivery, Digest.kind, Digest.subject, Digest.finished_at, delivery_status())
        .join(Digest, Digest.id == Delivery.digest_id)
        .outerjoin(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    ).all()
    written = [
        {
            "id": delivery.id,
            "digest_id": delivery.digest_id,
            "digest_kind": kind,
            "subject": subject,
            "sent_to": delivery.email,
            "status": status,
            "digest_finished_at": _iso(finished_at),
        }
        for delivery, kind, subject, finished_at, status in rows
    ]
    planned = [
        {
            "id": None,
            "digest_id": batch.digest_id,
            "digest_kind": batch.digest.kind,
            "subject": batch.digest.subject,
            "sent_to": subscriber.email,
            "status": planned_status(batch.status),
            "digest_finished_at": _iso(batch.digest.finished_at),
        }
        for batch in unclaimed_batches_of(session, subscriber.id)
    ]
    return written + planned


def _subscriber_fields(subscriber: Subscriber) -> dict[str, Any]:
    """The subscriber row as exported: every column the person gave us or we derived."""
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status,
        "categories": list(subscriber.categories or []),
        "frequency": subscriber.frequency,
        "timezone": subscriber.timezone,
        "paused": subscriber.paused,
        "consent_at": _iso(subscriber.consent_at),
        "consent_source": subscriber.consent_source,
        "consent_ip_hash": subscriber.consent_ip_hash,
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "confirmation_sent_at": _iso(subscriber.confirmation_sent_at),
        "soft_bounces": subscriber.soft_bounces,
        "created_at": _iso(subscriber.created_at),
        "updated_at": _iso(subscriber.updated_at),
    }
