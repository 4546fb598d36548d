"""Subscribers and comparisons for planning tests, written in bulk (thousands in milliseconds)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from digest.addresses import email_hash
from schema.models import Delivery, DeliveryBatch, Subscriber, Suppression, utcnow
from tests.support.factories import comparison, published, store, tool

MONDAY = datetime.fromisoformat("2026-11-23T00:00:00+00:00")  # a Monday


def add_subscribers(
    session: Session,
    count: int,
    *,
    prefix: str = "reader",
    start: int = 0,
    status: str = "active",
    categories: list[str] | None = None,
    frequency: str = "weekly",
    timezone: str | None = None,
    paused: bool = False,
    name: str | None = "Reader",
) -> list[str]:
    """`count` subscribers sharing these fields; returns their addresses."""
    now = utcnow()
    emails = [f"{prefix}{start + n:06d}@example.com" for n in range(count)]
    session.execute(
        insert(Subscriber),
        [
            {
                "email": email,
                "name": name,
                "status": status,
                "categories": categories or [],
                "frequency": frequency,
                "timezone": timezone,
                "paused": paused,
                "soft_bounces": 0,
                "created_at": now,
                "updated_at": now,
            }
            for email in emails
        ],
    )
    session.commit()
    return emails


def suppress(session: Session, email: str, reason: str = "complained") -> None:
    session.add(Suppression(email_hash=email_hash(email), reason=reason))
    session.commit()


def publish(
    session: Session,
    specs: Iterable[tuple[str, str]],
    *,
    at: datetime,
) -> None:
    """Comparisons (slug, category) published an hour apart, the last one an hour before `at`."""
    events = []
    specs = list(specs)
    for n, (slug, category) in enumerate(specs):
        when = at - timedelta(hours=len(specs) - n)
        first, second = slug.split("-vs-")
        events.append(
            published(
                comparison(
                    slug,
                    a=tool(first.title(), category=category, ship=4 - n % 3, skip=n % 3),
                    b=tool(second.title(), category=category, ship=2, skip=2),
                    published_at=when,
                    category=category,
                )
            )
        )
    store(session, *events)


def deliveries(session: Session, digest_id: int) -> list[tuple[int, int, str]]:
    """(batch id, subscriber id, email) of every recipient of a digest: its delivery rows, then
    the ids planned on batches not yet claimed (with their subscriber's address), in order."""
    written = [
        tuple(row)
        for row in session.execute(
            select(Delivery.batch_id, Delivery.subscriber_id, Delivery.email)
            .where(Delivery.digest_id == digest_id)
            .order_by(Delivery.id)
        )
    ]
    return written + planned_recipients(session, digest_id)  # type: ignore[return-value]


def every_recipient(session: Session) -> list[str]:
    """The address of every recipient of every digest (see `deliveries`)."""
    digest_ids = session.scalars(select(DeliveryBatch.digest_id).distinct()).all()
    return [email for digest_id in digest_ids for _, _, email in deliveries(session, digest_id)]


def planned_recipients(session: Session, digest_id: int) -> list[tuple[int, int, str]]:
    """(batch id, subscriber id, email) planned on the digest's batches not yet claimed."""
    planned = [
        (batch_id, subscriber_id)
        for batch_id, ids in session.execute(
            select(DeliveryBatch.id, DeliveryBatch.subscriber_ids)
            .where(
                DeliveryBatch.digest_id == digest_id,
                DeliveryBatch.subscriber_ids.is_not(None),
                DeliveryBatch.attempts == 0,  # the first claim writes the rows
            )
            .order_by(DeliveryBatch.seq)
        )
        for subscriber_id in (json.loads(ids) if isinstance(ids, str) else ids)
    ]
    emails = dict(
        session.execute(
            select(Subscriber.id, Subscriber.email).where(
                Subscriber.id.in_(sorted({subscriber_id for _, subscriber_id in planned}))
            )
        ).all()
    )
    return [(batch_id, sid, emails[sid]) for batch_id, sid in planned]


def batch_sizes(session: Session, digest_id: int) -> list[int]:
    return list(
        session.scalars(
            select(DeliveryBatch.size)
            .where(DeliveryBatch.digest_id == digest_id)
            .order_by(DeliveryBatch.seq)
        )
    )


def count(session: Session, model: Any, **where: Any) -> int:
    statement = select(func.count()).select_from(model)
    for column, value in where.items():
        statement = statement.where(getattr(model, column) == value)
    return int(session.scalar(statement) or 0)
