"""One person's data: what we hold about them (export) and forgetting it (erasure).

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
  added later is covered too) for the address.

Names are removed from the person's own rows only: a name ("Ada") is also an ordinary word in
other people's data, an address is not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import JSON, String, Text, cast, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from digest.addresses import email_hash
from schema.models import (
    Base,
    Delivery,
    Digest,
    EmailEvent,
    Subscriber,
    Suppression,
    WebhookBatch,
)

NAME_PLACEHOLDER = "[erased]"
# What may not touch an address for it to be that address: a character common in local parts
# before it (not `=`, `/` or `:`, which precede addresses in links and headers), a label
# character or a dot that continues the domain after it.
_ADDRESS_BEFORE = r"(?<![\w.+'-])"
_ADDRESS_AFTER = r"(?![\w-]|\.[\w-])"
CHUNK = 1000


def deleted_placeholder(subscriber_id: int) -> str:
    """What an erased subscriber's address becomes (unique per row, never deliverable)."""
    return f"deleted-{subscriber_id}@invalid"


# --- redaction ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Redaction:
    """Strings to remove and what replaces them.

    In the person's own rows (`own`: their events, their deliveries) every occurrence of the
    address goes, in any case and spelling, and so does their name. Elsewhere only the address
    as a whole address goes: erasing bob@x.example must not rewrite jimbob@x.example or
    bob@x.example.org in someone else's row, and a name ("Ada") is an ordinary word there.
    """

    address: str
    replacement: str
    names: tuple[str, ...] = ()

    def _pattern(self, own: bool) -> re.Pattern[str]:
        spellings = "|".join(map(re.escape, sorted(_spellings(self.address), key=len)[::-1]))
        if not own:
            return re.compile(_ADDRESS_BEFORE + f"(?:{spellings})" + _ADDRESS_AFTER, re.I)
        names = sorted({n for n in self.names if n}, key=len, reverse=True)
        return re.compile("|".join([spellings, *map(re.escape, names)]), re.IGNORECASE)

    def text(self, value: str, *, own: bool = False) -> str:
        spellings = {a.lower() for a in _spellings(self.address)}

        def replace(match: re.Match[str]) -> str:
            found = match.group(0).lower()
            return self.replacement if found in spellings else NAME_PLACEHOLDER

        return self._pattern(own).sub(replace, value)

    def json(self, value: Any, *, own: bool = False) -> Any:
        """The same JSON with every string (keys too, at any depth) redacted."""
        if isinstance(value, str):
            return self.text(value, own=own)
        if isinstance(value, list):
            return [self.json(v, own=own) for v in value]
        if isinstance(value, dict):
            return {self.text(k, own=own): self.json(v, own=own) for k, v in value.items()}
        return value


def _spellings(address: str) -> set[str]:
    """The address as written and percent-encoded (in a link: `bob%40x.example`)."""
    return {address, quote(address, safe="")}


def _like_patterns(address: str) -> list[str]:
    """LIKE patterns (lower case, `\\` escapes) that find the address in text or in JSON text.

    JSON may store non-ASCII characters as `\\uXXXX` escapes, so the escaped spelling is searched
    too. A superset: the exact match is decided in Python (`Redaction`).
    """
    spellings = {s.lower() for a in _spellings(address) for s in (a, json.dumps(a)[1:-1])}
    escaped = (s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for s in spellings)
    return [f"%{s}%" for s in escaped]


def _mentions_address(column: Any, address: str) -> ColumnElement[bool]:
    as_text = cast(column, Text) if isinstance(column.type, JSON) else column
    return or_(*(func.lower(as_text).like(p, escape="\\") for p in _like_patterns(address)))


# --- export -------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _own_events(subscriber: Subscriber, delivery_ids: list[int]) -> Any:
    """The person's events: linked to one of their deliveries, or sent for their address."""
    mine = [func.lower(EmailEvent.email) == subscriber.email.lower()]
    for part in _chunks(delivery_ids):
        mine.append(EmailEvent.delivery_id.in_(part))
    return or_(*mine)


def export_data(session: Session, subscriber_id: int) -> dict[str, Any] | None:
    """Everything stored about one subscriber (GDPR access): the row, deliveries and events.

    Events are the person's own (type, time, digest, link, machine flag), never the raw SendGrid
    payload, which holds SendGrid's ids and IPs rather than anything the person gave us.
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    deliveries = session.execute(
        select(Delivery, Digest.kind, Digest.subject, Digest.finished_at)
        .join(Digest, Digest.id == Delivery.digest_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id)
    ).all()
    delivery_ids = [delivery.id for delivery, *_ in deliveries]
    events = session.scalars(
        select(EmailEvent)
        .where(_own_events(subscriber, delivery_ids))
        .order_by(EmailEvent.occurred_at, EmailEvent.id)
    ).all()
    return {
        "subscriber": {
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
        },
        "deliveries": [
            {
                "id": delivery.id,
                "digest_id": delivery.digest_id,
                "digest_kind": kind,
                "subject": subject,
                "sent_to": delivery.email,
                "status": delivery.status,
                "digest_finished_at": _iso(finished_at),
            }
            for delivery, kind, subject, finished_at in deliveries
        ],
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
    }


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


def _suppress_deleted(session: Session, address: str, now: datetime) -> None:
    key = email_hash(address)
    row = session.scalar(select(Suppression).where(Suppression.email_hash == key))
    if row is None:
        session.add(Suppression(email_hash=key, reason="deleted", created_at=now))
    elif row.reason != "deleted":
        row.reason = "deleted"  # the strongest reason: processing redacts its later events


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
                _mentions_address(EmailEvent.payload, address),
                _mentions_address(EmailEvent.url, address),
                _mentions_address(EmailEvent.sg_message_id, address),
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


def _belongs(event: Any, address: str, delivery_ids: Collection[int]) -> bool:
    if not isinstance(event, dict):
        return False
    if str(event.get("email") or "").strip().lower() == address:
        return True
    try:
        return int(str(event.get("delivery_id"))) in delivery_ids
    except ValueError:
        return False


def redact_body(body: str, redaction: Redaction, delivery_ids: Collection[int] = ()) -> str:
    """A stored webhook body with the address replaced (and names in the person's own events).

    The result is still a JSON array of the same events, so a body not yet processed processes
    as before: the replacement is the erased row's placeholder, which its delivery now carries.
    """
    try:
        events = json.loads(body)
    except ValueError:
        return redaction.text(body)
    if not isinstance(events, list):
        return json.dumps(redaction.json(events), separators=(",", ":"))
    address = redaction.address.lower()
    redacted = [redaction.json(e, own=_belongs(e, address, delivery_ids)) for e in events]
    return json.dumps(redacted, separators=(",", ":"))


def _erase_bodies(
    session: Session, redaction: Redaction, delivery_ids: list[int], report: ErasureReport
) -> None:
    ids = set(delivery_ids)
    for batch in session.scalars(
        select(WebhookBatch).where(_mentions_address(WebhookBatch.body, redaction.address))
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
            select(*keys, column).where(_mentions_address(column, redaction.address))
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
    if subscriber is None or subscriber.status == "deleted":
        return report
    address = subscriber.email
    placeholder = deleted_placeholder(subscriber_id)
    names = (subscriber.name.strip(),) if subscriber.name and subscriber.name.strip() else ()
    redaction = Redaction(address=address, replacement=placeholder, names=names)
    _suppress_deleted(session, address, now)

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

    subscriber.email = placeholder
    subscriber.name = None
    subscriber.status = "deleted"
    subscriber.categories = []
    subscriber.timezone = None
    subscriber.paused = False
    subscriber.consent_source = None
    subscriber.consent_ip_hash = None
    subscriber.updated_at = now
    session.flush()
    report.count("subscribers")

    _erase_events(session, redaction, delivery_ids, report)
    _erase_bodies(session, redaction, delivery_ids, report)
    session.flush()
    _sweep(session, redaction, report)
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
    _suppress_deleted(session, address, now)
    redaction = Redaction(address=address, replacement="erased@invalid")
    _erase_events(session, redaction, [], report)
    _erase_bodies(session, redaction, [], report)
    session.flush()
    _sweep(session, redaction, report)
    session.flush()
    report.erased = bool(report.rows)
    return report
