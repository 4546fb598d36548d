"""How one digest did: the ledger's figures beside what SendGrid reported back.

Counts of people, not of events: "delivered 950" means 950 recipients got at least one
`delivered` event, however often SendGrid repeated it. A recipient is its delivery when the event
is linked to one, else its lower-cased address. Opens and clicks come twice: all of them, and
human ones (recipients with at least one open or click not flagged as machine activity by
`tracking.flag_machine_activity`), with the machine events counted apart.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, String, case, cast, distinct, func, select
from sqlalchemy.orm import Session

from digest.tracking import KNOWN_EVENTS
from schema.models import Delivery, DeliveryBatch, Digest, EmailEvent

FIGURES = (
    "recipients",
    "sent",
    "failed_deliveries",
    "processed",
    "dropped",
    "delivered",
    "deferred",
    "bounced",
    "soft_bounced",
    "complaints",
    "unique_opens",
    "human_unique_opens",
    "machine_opens",
    "unique_clicks",
    "human_unique_clicks",
    "machine_clicks",
    "unsubscribes",
    "ambiguous_batches",
    "failed_batches",
)


def latest_digest_id(session: Session) -> int | None:
    return session.scalar(select(Digest.id).order_by(Digest.created_at.desc(), Digest.id.desc()))


def digest_stats(session: Session, digest_id: int) -> dict[str, Any]:
    """Every figure of one digest; raises LookupError for an unknown id."""
    digest = session.get(Digest, digest_id)
    if digest is None:
        raise LookupError(f"digest {digest_id} does not exist")

    deliveries = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.digest_id == digest_id)
            .group_by(Delivery.status)
        ).all()
    )
    batches = dict(
        session.execute(
            select(DeliveryBatch.status, func.count())
            .where(DeliveryBatch.digest_id == digest_id)
            .group_by(DeliveryBatch.status)
        ).all()
    )

    who = func.coalesce(cast(EmailEvent.delivery_id, String), func.lower(EmailEvent.email))
    human = case((EmailEvent.machine.is_(False), who))
    events: dict[tuple[str, str | None], dict[str, int]] = {}
    for name, bounce, total, people, humans, machines in session.execute(
        select(
            EmailEvent.event,
            EmailEvent.bounce_class,
            func.count(),
            func.count(distinct(who)),
            func.count(distinct(human)),
            func.sum(cast(EmailEvent.machine, Integer)),
        )
        .where(EmailEvent.digest_id == digest_id)
        .group_by(EmailEvent.event, EmailEvent.bounce_class)
    ):
        events[(name, bounce)] = {
            "events": total,
            "people": people,
            "humans": humans,
            "machine": int(machines or 0),
        }

    def people(name: str, bounce: str | None = None, key: str = "people") -> int:
        return events.get((name, bounce), {}).get(key, 0)

    unsubscribers = session.scalar(
        select(func.count(distinct(who))).where(
            EmailEvent.digest_id == digest_id,
            EmailEvent.event.in_(("unsubscribe", "group_unsubscribe")),
        )
    )
    other = {
        name: figures["events"]
        for (name, _), figures in sorted(events.items())
        if name not in KNOWN_EVENTS
    }
    figures = {
        "recipients": sum(deliveries.values()),
        "sent": deliveries.get("sent", 0),
        "failed_deliveries": deliveries.get("failed", 0),
        "processed": people("processed"),
        "dropped": people("dropped"),
        "delivered": people("delivered"),
        "deferred": people("deferred"),
        "bounced": people("bounce", "hard"),
        "soft_bounced": people("bounce", "soft"),
        "complaints": people("spamreport"),
        "unique_opens": people("open"),
        "human_unique_opens": people("open", key="humans"),
        "machine_opens": people("open", key="machine"),
        "unique_clicks": people("click"),
        "human_unique_clicks": people("click", key="humans"),
        "machine_clicks": people("click", key="machine"),
        "unsubscribes": unsubscribers or 0,
        "ambiguous_batches": batches.get("ambiguous", 0),
        "failed_batches": batches.get("failed", 0),
    }
    return {
        "digest": {
            "id": digest.id,
            "kind": digest.kind,
            "status": digest.status,
            "subject": digest.subject,
            "created_at": digest.created_at.isoformat() if digest.created_at else None,
            "finished_at": digest.finished_at.isoformat() if digest.finished_at else None,
        },
        **figures,
        "deliveries_by_status": dict(sorted(deliveries.items())),
        "batches_by_status": dict(sorted(batches.items())),
        "other_events": other,
    }
