"""Forgetting one person (erasure); what we hold about them is exported by `digest.data_export`.

Erasure is complete, not "the subscriber row": a person's address also reaches deliveries,
SendGrid's events (the `email` field, and bounce texts such as "550 5.1.1 <bob@x.example>: user
unknown"), the raw webhook bodies those events came in (processed or still waiting), batch error
texts, and whatever another text or JSON column may come to hold. So `erase_subscriber`

- keeps only the hashed suppression entry (`digest/addresses.py`), so an old import cannot re-add
  the address and events that arrive later are redacted on arrival (`tracking.process_batch`);
- anonymises the subscriber row and their deliveries (the placeholder `deleted-<id>@invalid`);
- redacts their events: the address (any case) and name in every string of the payload, keys
  included, nested or not, and the `email` column and key dropped;
- rewrites every stored webhook body that names the address with the address replaced by the
  placeholder, so an unprocessed body still processes (its events link to the anonymised
  delivery and change nothing);
- sweeps every other text and JSON column of every table (from the models' metadata, so a column
  added later is covered too) for the address;
- adds one row to `erasures`: a timestamp and nothing else, so the console can count erasures
  per week (the anonymised row's `updated_at` moves on, and a suppression that was already
  there keeps its first date) without keeping anything about whom.

What matches the address, and the rewriting, is `digest.redaction`. Names are removed from the
person's own rows only: a name ("Ada") is also an ordinary word in
other people's data, an address is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, String, Text, func, or_, select, update
from sqlalchemy.orm import Session

from digest import votes
from digest.addresses import email_hash, suppress
from digest.data_export import export_data
from digest.redaction import Redaction, mentions_address, redact_body
from schema.models import Base, Delivery, EmailEvent, Erasure, Subscriber, WebhookBatch
from schema.statuses import SubscriberStatus, SuppressionReason

__all__ = [  # export and redaction live in their own modules; these names stay importable here
    "ErasureReport",
    "Redaction",
    "erase_address",
    "erase_subscriber",
    "export_data",
    "redact_body",
]
CHUNK = 1000


def deleted_placeholder(subscriber_id: int) -> str:
    """What an erased subscriber's address becomes (unique per row, never deliverable)."""
    return f"deleted-{subscriber_id}@invalid"


# --- erasure ------------------------------------------------------------------------------------


@dataclass
class ErasureReport:
    """What one erasure changed, table by table (row counts)."""

    subscriber_id: int | None = None
    erased: bool = False
    rows: dict[str, int] = field(default_factory=dict)

    def count(self, table: str, n: int = 1) -> None:
        if n:
            self.rows[table] = self.rows.get(table, 0) + n


def _chunks(values: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _lock_unprocessed_bodies(session: Session) -> None:
    """Wait for any body being processed right now, and hold the rest until we commit.

    A worker processing a body locks it first; holding these locks means no event carrying the
    address is written between our scan and our commit, and a worker that starts after us reads
    the `deleted` suppression and redacts on arrival.
    """
    session.execute(
        select(WebhookBatch.id)
        .where(WebhookBatch.processed_at.is_(None))
        .order_by(WebhookBatch.id)
        .with_for_update()
    ).all()


def _erase_events(
    session: Session, redaction: Redaction, delivery_ids: list[int], report: ErasureReport
) -> None:
    address = redaction.address.lower()
    own = [func.lower(EmailEvent.email) == address]
    for part in _chunks(delivery_ids):
        own.append(EmailEvent.delivery_id.in_(part))
    candidates = session.scalars(
        select(EmailEvent).where(
            or_(
                *own,
                mentions_address(EmailEvent.payload, address),
                mentions_address(EmailEvent.url, address),
                mentions_address(EmailEvent.sg_message_id, address),
            )
        )
    )
    ids = set(delivery_ids)
    for event in candidates:
        is_own = (event.email or "").lower() == address or event.delivery_id in ids
        payload = dict(event.payload or {})
        if is_own:
            payload.pop("email", None)
            event.email = None
        redacted = redaction.json(payload, own=is_own)
        if redacted != event.payload:
            event.payload = redacted
        if event.url:
            event.url = redaction.text(event.url, own=is_own)
        if event.sg_message_id:
            event.sg_message_id = redaction.text(event.sg_message_id, own=is_own)
        if session.is_modified(event):
            report.count("email_events")


def _erase_bodies(
    session: Session, redaction: Redaction, delivery_ids: list[int], report: ErasureReport
) -> None:
    ids = set(delivery_ids)
    for batch in session.scalars(
        select(WebhookBatch).where(mentions_address(WebhookBatch.body, redaction.address))
    ):
        body = redact_body(batch.body, redaction, ids)
        if body != batch.body:
            batch.body = body
            report.count("webhook_batches")


# Columns erased above by rule (the person's rows); every other text column is swept.
_BY_RULE = {("subscribers", "email"), ("subscribers", "name"), ("email_events", "payload")}
_BY_RULE |= {("email_events", c) for c in ("email", "url", "sg_message_id")}
_BY_RULE |= {("webhook_batches", "body")}


def text_columns() -> list[tuple[Any, Any]]:
    """(table, column) for every string, text and JSON column of every model."""
    found = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, String | Text | JSON):
                found.append((table, column))
    return found


def _sweep(session: Session, redaction: Redaction, report: ErasureReport) -> None:
    """Any other column that mentions the address: rewritten with the address replaced."""
    for table, column in text_columns():
        if (table.name, column.name) in _BY_RULE:
            continue
        keys = list(table.primary_key.columns)
        rows = session.execute(
            select(*keys, column).where(mentions_address(column, redaction.address))
        ).all()
        for row in rows:
            value = row[-1]
            is_json = isinstance(column.type, JSON)
            new = redaction.json(value) if is_json else redaction.text(value)
            if new == value:  # the substring search also finds longer addresses
                continue
            where = [key == row[i] for i, key in enumerate(keys)]
            session.execute(update(table).where(*where).values({column.name: new}))
            report.count(table.name)


def _anonymise_deliveries(
    session: Session, subscriber_id: int, redaction: Redaction, report: ErasureReport
) -> list[int]:
    """Point the subscriber's deliveries at the placeholder; returns their ids."""
    placeholder = redaction.replacement
    delivery_ids = list(
        session.scalars(select(Delivery.id).where(Delivery.subscriber_id == subscriber_id))
    )
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id)
        .values(email=placeholder)
        .execution_options(synchronize_session=False)
    )
    report.count("deliveries", len(delivery_ids))
    for delivery in session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber_id, Delivery.error.is_not(None))
    ):
        delivery.error = redaction.text(delivery.error or "", own=True)
    return delivery_ids


def _anonymise_subscriber(subscriber: Subscriber, placeholder: str, now: datetime) -> None:
    """The row stays (deliveries point at it) with nothing personal left in it."""
    subscriber.email = placeholder
    subscriber.name = None
    subscriber.status = SubscriberStatus.DELETED
    subscriber.categories = []
    subscriber.timezone = None
    subscriber.paused = False
    subscriber.consent_source = None
    subscriber.consent_ip_hash = None
    subscriber.updated_at = now


def erase_subscriber(
    session: Session, subscriber_id: int, now: datetime | None = None
) -> ErasureReport:
    """Erase one subscriber's personal data everywhere, keeping a hashed suppression entry.

    The row stays (deliveries point at it) but is anonymised. `erased` is False when there was
    nothing left to erase (unknown id, or erased before). The caller commits.
    """
    now = now or datetime.now(UTC)
    report = ErasureReport(subscriber_id=subscriber_id)
    _lock_unprocessed_bodies(session)  # first: a worker locks its body, then subscribers
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None or subscriber.status == SubscriberStatus.DELETED:
        return report
    address = subscriber.email
    placeholder = deleted_placeholder(subscriber_id)
    names = (subscriber.name.strip(),) if subscriber.name and subscriber.name.strip() else ()
    redaction = Redaction(address=address, replacement=placeholder, names=names)
    suppress(session, email_hash(address), SuppressionReason.DELETED, now=now)

    delivery_ids = _anonymise_deliveries(session, subscriber_id, redaction, report)
    _anonymise_subscriber(subscriber, placeholder, now)
    session.flush()
    report.count("subscribers")

    _erase_events(session, redaction, delivery_ids, report)
    _erase_bodies(session, redaction, delivery_ids, report)
    report.count("reader_votes", votes.forget_reader(session, subscriber_id))
    session.flush()
    _sweep(session, redaction, report)
    session.add(Erasure(erased_at=now))  # that it happened, and when: nothing about whom
    session.flush()
    report.erased = True
    return report


def erase_address(session: Session, address: str, now: datetime | None = None) -> ErasureReport:
    """An operator's erasure by address: the subscriber if there is one, and every trace anyway.

    With no subscriber row (an address known only from SendGrid's events, or erased before and
    mentioned since) the address is still suppressed and redacted everywhere.
    """
    now = now or datetime.now(UTC)
    address = address.strip()
    subscriber_id = session.scalar(
        select(Subscriber.id).where(func.lower(Subscriber.email) == address.lower())
    )
    if subscriber_id is not None:
        report = erase_subscriber(session, subscriber_id, now)
        if report.erased:
            return report
    report = ErasureReport(subscriber_id=subscriber_id)
    _lock_unprocessed_bodies(session)
    suppress(session, email_hash(address), SuppressionReason.DELETED, now=now)
    redaction = Redaction(address=address, replacement="erased@invalid")
    _erase_events(session, redaction, [], report)
    _erase_bodies(session, redaction, [], report)
    session.flush()
    _sweep(session, redaction, report)
    report.erased = bool(report.rows)
    if report.erased:
        session.add(Erasure(erased_at=now))
    session.flush()
    return report
