"""Subscribers and comparisons for planning tests, written in bulk (thousands in milliseconds)."""

from __future__ import annotations

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
    """(batch id, subscriber id, email) of every delivery of a digest."""
    return [
        tuple(row)  # type: ignore[misc]
        for row in session.execute(
            select(Delivery.batch_id, Delivery.subscriber_id, Delivery.email)
            .where(Delivery.digest_id == digest_id)
            .order_by(Delivery.id)
        )
    ]


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
