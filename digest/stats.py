"""How one digest did: the ledger's figures beside what SendGrid reported back.

Counts of people, not of events: "delivered 950" means 950 recipients got at least one
`delivered` event, however often SendGrid repeated it. A recipient is its delivery when the event
is linked to one, else its lower-cased address. Opens and clicks come twice: all of them, and
human ones (recipients with at least one open or click not flagged as machine activity by
`tracking.flag_machine_activity`), with the machine events counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, case, cast, distinct, func, select
from sqlalchemy.orm import Session

from digest.ledger_counts import count_by_status
from digest.records import JsonRecord
from digest.tracking import KNOWN_EVENTS
from schema.models import Delivery, DeliveryBatch, Digest, EmailEvent
from schema.statuses import BatchStatus, DeliveryStatus

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


@dataclass(frozen=True)
class DigestSummary(JsonRecord):
    id: int
    kind: str
    status: str
    subject: str | None
    created_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class DigestStats(JsonRecord):
    """Every figure of one digest; `as_dict()` is `digest stats --json` (FIGURES in order)."""

    digest: DigestSummary
    recipients: int
    sent: int
    failed_deliveries: int
    processed: int
    dropped: int
    delivered: int
    deferred: int
    bounced: int
    soft_bounced: int
    complaints: int
    unique_opens: int
    human_unique_opens: int
    machine_opens: int
    unique_clicks: int
    human_unique_clicks: int
    machine_clicks: int
    unsubscribes: int
    ambiguous_batches: int
    failed_batches: int
    deliveries_by_status: dict[str, int]
    batches_by_status: dict[str, int]
    other_events: dict[str, int]

    def figures(self) -> dict[str, Any]:
        """The document without the digest's own header (the admin API shows that already)."""
        document = self.as_dict()
        document.pop("digest")
        return document


@dataclass(frozen=True)
class EventFigures:
    """One (event, bounce class) of a digest: events, distinct recipients, human ones, machine."""

    events: int
    people: int
    humans: int
    machine: int


def digest_stats(session: Session, digest_id: int) -> DigestStats:
    """Every figure of one digest; raises LookupError for an unknown id."""
    digest = session.get(Digest, digest_id)
    if digest is None:
        raise LookupError(f"digest {digest_id} does not exist")
    deliveries = count_by_status(session, Delivery, digest_id)
    batches = count_by_status(session, DeliveryBatch, digest_id)
    events = _event_figures(session, digest_id)

    def people(name: str, bounce: str | None = None, key: str = "people") -> int:
        figures = events.get((name, bounce))
        return getattr(figures, key) if figures else 0

    return DigestStats(
        digest=DigestSummary(
            id=digest.id,
            kind=digest.kind,
            status=digest.status,
            subject=digest.subject,
            created_at=digest.created_at.isoformat() if digest.created_at else None,
            finished_at=digest.finished_at.isoformat() if digest.finished_at else None,
        ),
        recipients=sum(deliveries.values()),
        sent=deliveries[DeliveryStatus.SENT],
        failed_deliveries=deliveries[DeliveryStatus.FAILED],
        processed=people("processed"),
        dropped=people("dropped"),
        delivered=people("delivered"),
        deferred=people("deferred"),
        bounced=people("bounce", "hard"),
        soft_bounced=people("bounce", "soft"),
        complaints=people("spamreport"),
        unique_opens=people("open"),
        human_unique_opens=people("open", key="humans"),
        machine_opens=people("open", key="machine"),
        unique_clicks=people("click"),
        human_unique_clicks=people("click", key="humans"),
        machine_clicks=people("click", key="machine"),
        unsubscribes=_unsubscribers(session, digest_id),
        ambiguous_batches=batches[BatchStatus.AMBIGUOUS],
        failed_batches=batches[BatchStatus.FAILED],
        deliveries_by_status=dict(sorted(deliveries.items())),
        batches_by_status=dict(sorted(batches.items())),
        other_events={
            name: figures.events
            for (name, _), figures in sorted(events.items(), key=lambda item: item[0])
            if name not in KNOWN_EVENTS
        },
    )


def recipient_of_event() -> Any:
    """A recipient: its delivery when the event is linked to one, else its lower-cased address.
    Every figure that counts people counts this (digest/click_stats.py and
    digest/activity_stats.py too), so they agree."""
    return func.coalesce(cast(EmailEvent.delivery_id, String), func.lower(EmailEvent.email))


def _event_figures(session: Session, digest_id: int) -> dict[tuple[str, str | None], EventFigures]:
    who = recipient_of_event()
    human = case((EmailEvent.machine.is_(False), who))
    rows = session.execute(
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
    )
    return {
        (name, bounce): EventFigures(total, people, humans, int(machines or 0))
        for name, bounce, total, people, humans, machines in rows
    }


def _unsubscribers(session: Session, digest_id: int) -> int:
    unsubscribers = session.scalar(
        select(func.count(distinct(recipient_of_event()))).where(
            EmailEvent.digest_id == digest_id,
            EmailEvent.event.in_(("unsubscribe", "group_unsubscribe")),
        )
    )
    return unsubscribers or 0
