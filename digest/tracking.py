"""SendGrid delivery events: normalise a stored webhook batch, link, deduplicate, suppress.

`process_batch` turns one verified `WebhookBatch` into `EmailEvent` rows and applies what they
mean to the list:

- **Linking.** Each event is tied to its delivery through the `custom_args` the dispatcher put on
  the personalization (SendGrid copies them to the top level of every event: `digest_id`,
  `delivery_id`), accepted only when the delivery exists and agrees on digest and address (so
  another environment's ids sharing the SendGrid account cannot attach to ours). Failing that, the
  `sg_message_id` prefix (our batch's `X-Message-Id`) plus the address finds it. Events for unknown
  deliveries are still stored, unlinked.
- **At least once.** SendGrid redelivers. `sg_event_id` is unique, and so is `dedupe_key`, a hash
  of (message id, address, event, timestamp, URL): the URL is part of it because one recipient can
  click two links in the same second, and those are two clicks. Rows are inserted with
  `ON CONFLICT DO NOTHING ... RETURNING`, and only rows actually inserted have consequences, so a
  batch delivered twice (or processed twice) counts once.
- **Suppression.** Hard bounce → `bounced` (+ hashed suppression), spam report → `complained`
  (+ suppression), unsubscribe / group unsubscribe → `unsubscribed`, `soft_bounce_limit`
  consecutive soft bounces → `bounced`. A status only moves towards the stronger one
  (complained > bounced > unsubscribed > active), so a late unsubscribe never softens a complaint.
- **Machine activity.** Opens SendGrid marks `sg_machine_open` (Apple Mail Privacy Protection),
  clicks within `machine_click_seconds` of delivery, and bursts of `machine_click_links` distinct
  links clicked within that window are flagged `machine`; stats report human figures apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from digest.addresses import email_hash
from digest.privacy import Redaction, redact_body
from digest.settings import Settings, get_settings
from schema.models import (
    Delivery,
    DeliveryBatch,
    Digest,
    EmailEvent,
    Subscriber,
    Suppression,
    WebhookBatch,
    utcnow,
)

log = logging.getLogger(__name__)

KNOWN_EVENTS = frozenset(
    {
        "processed",
        "dropped",
        "delivered",
        "deferred",
        "bounce",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }
)
# `bounce_classification` values that describe our sending, not the address: never permanent.
SENDER_SIDE_BOUNCES = frozenset(
    {"technical", "content", "reputation", "frequency or volume too high"}
)
# `dropped` reasons that mean SendGrid already holds the address on one of its suppression lists.
DROPPED_REASONS = {
    "bounced address": "bounced",
    "spam reporting address": "complained",
    "unsubscribed address": "unsubscribed",
}
# A subscriber's status only ever moves up this ladder through webhook events.
STATUS_RANK = {"pending": 0, "active": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}
SUPPRESSION_RANK = {"unsubscribed": 1, "bounced": 2, "complained": 3, "deleted": 4}
MAX_ID = 2**63 - 1
CHUNK = 1000


@dataclass
class BatchOutcome:
    """What processing one webhook batch did."""

    batch_id: int
    events: int = 0
    inserted: int = 0
    duplicates: int = 0
    linked: int = 0
    already_processed: bool = False
    status_changes: dict[str, int] = field(default_factory=dict)


# --- normalising -------------------------------------------------------------------------------


def _text(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    cleaned = str(value).replace("\x00", "").strip()  # PostgreSQL text cannot hold NUL
    return cleaned[:limit] if cleaned else None


def _positive_id(value: Any) -> int | None:
    """custom_args arrive as strings (SendGrid stringifies them); anything odd links to nothing."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def _occurred_at(value: Any, fallback: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(float(value)), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback


def bounce_class(raw: dict[str, Any]) -> str:
    """`hard` or `soft` for a `bounce` event.

    SendGrid's `type` is `bounce` (permanent) or `blocked` (temporary). Its newer
    `bounce_classification`, when present, can say the fault was ours (reputation, content,
    volume, technical): such a bounce is soft, since the address itself may be fine.
    """
    kind = str(raw.get("type") or "").strip().lower()
    classification = str(raw.get("bounce_classification") or "").strip().lower()
    if kind == "blocked" or classification in SENDER_SIDE_BOUNCES:
        return "soft"
    return "hard"


def dedupe_key(message_id: str | None, email: str | None, event: str, ts: int, url: str | None):
    """The second idempotency key, or None when there is no message id to anchor it."""
    if not message_id:
        return None
    parts = (message_id, (email or "").lower(), event, str(ts), url or "")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def normalise(raw: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    """One SendGrid event object as an `email_events` row (before linking).

    Unknown event types keep their name; a missing or unusable timestamp falls back to the time
    the batch was received, so nothing in a batch can make it fail.
    """
    event = _text(raw.get("event"), 30) or "unknown"
    email = _text(raw.get("email"), 320)
    occurred_at = _occurred_at(raw.get("timestamp"), received_at)
    message_id = _text(raw.get("sg_message_id"), 200)
    url = _text(raw.get("url"), 10_000) if event == "click" else None
    event_id = _text(raw.get("sg_event_id"), 1000)
    if event_id and len(event_id) > 100:
        event_id = hashlib.sha256(event_id.encode()).hexdigest()
    ts = int(occurred_at.timestamp())
    return {
        "sg_event_id": event_id,
        "sg_message_id": message_id,
        "dedupe_key": dedupe_key(message_id, email, event, ts, url),
        "event": event,
        "bounce_class": bounce_class(raw) if event == "bounce" else None,
        "email": email,
        "occurred_at": occurred_at,
        "delivery_id": _positive_id(raw.get("delivery_id")),
        "digest_id": _positive_id(raw.get("digest_id")),
        "url": url,
        "machine": event == "open" and raw.get("sg_machine_open") in (True, "true", 1),
        "payload": raw,
    }


def _unique_in_batch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats inside one body before the database sees them (cheaper than conflicts)."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for row in rows:
        keys = {(name, row[name]) for name in ("sg_event_id", "dedupe_key") if row[name]}
        if keys & seen:
            continue
        seen |= keys
        unique.append(row)
    return unique


def _storable(value: Any) -> Any:
    """The same JSON without NUL characters and with lone surrogates replaced."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


# --- linking -----------------------------------------------------------------------------------


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def link(session: Session, rows: list[dict[str, Any]]) -> int:
    """Fill `delivery_id`/`digest_id` with ids that exist and agree; returns how many linked."""
    wanted = sorted({r["delivery_id"] for r in rows if r["delivery_id"]})
    deliveries: dict[int, tuple[int, str]] = {}
    for part in _chunks(wanted):
        for d_id, digest_id, email in session.execute(
            select(Delivery.id, Delivery.digest_id, Delivery.email).where(Delivery.id.in_(part))
        ):
            deliveries[d_id] = (digest_id, email.lower())

    by_message: dict[tuple[str, str], tuple[int, int]] = {}
    unlinked = [
        r
        for r in rows
        if not _agrees(r, deliveries.get(r["delivery_id"])) and r["sg_message_id"] and r["email"]
    ]
    prefixes = sorted({r["sg_message_id"].split(".", 1)[0] for r in unlinked})
    for part in _chunks(prefixes):
        batch_ids = dict(
            session.execute(
                select(DeliveryBatch.id, DeliveryBatch.message_id).where(
                    DeliveryBatch.message_id.in_(part)
                )
            ).all()
        )
        if not batch_ids:
            continue
        emails = sorted({r["email"].lower() for r in unlinked})
        for email_part in _chunks(emails):
            for d_id, digest_id, batch_id, email in session.execute(
                select(Delivery.id, Delivery.digest_id, Delivery.batch_id, Delivery.email).where(
                    Delivery.batch_id.in_(list(batch_ids)),
                    func.lower(Delivery.email).in_(email_part),
                )
            ):
                by_message[(batch_ids[batch_id], email.lower())] = (d_id, digest_id)

    digest_refs = sorted({r["digest_id"] for r in rows if r["digest_id"]})
    digests: set[int] = set()
    for part in _chunks(digest_refs):
        digests.update(session.scalars(select(Digest.id).where(Digest.id.in_(part))))

    linked = 0
    for row in rows:
        found = deliveries.get(row["delivery_id"])
        if _agrees(row, found):
            row["digest_id"] = found[0]  # type: ignore[index]
        else:
            row["delivery_id"] = None
            key = (
                (row["sg_message_id"].split(".", 1)[0], row["email"].lower())
                if row["sg_message_id"] and row["email"]
                else None
            )
            if key in by_message:
                row["delivery_id"], row["digest_id"] = by_message[key]
            elif row["digest_id"] not in digests:
                row["digest_id"] = None
        linked += row["delivery_id"] is not None
    return linked


def _agrees(row: dict[str, Any], found: tuple[int, str] | None) -> bool:
    if found is None:
        return False
    digest_id, email = found
    if row["digest_id"] and row["digest_id"] != digest_id:
        return False
    return not (row["email"] and row["email"].lower() != email)


# --- storing -----------------------------------------------------------------------------------


INSERTED_COLUMNS = (
    "sg_event_id",
    "sg_message_id",
    "dedupe_key",
    "event",
    "bounce_class",
    "email",
    "occurred_at",
    "delivery_id",
    "digest_id",
    "url",
    "machine",
    "payload",
)
RETURNED = "id, event, bounce_class, email, occurred_at, delivery_id, sg_message_id"

# PostgreSQL: the whole batch as ONE json parameter, unpacked server-side. Thousands of rows in
# one statement without thousands of bind parameters to render, send and parse.
PG_INSERT = text(
    f"INSERT INTO email_events ({', '.join(INSERTED_COLUMNS)}) "
    f"SELECT {', '.join(INSERTED_COLUMNS)} "
    "FROM json_populate_recordset(NULL::email_events, CAST(:rows AS json)) "
    f"ON CONFLICT DO NOTHING RETURNING {RETURNED}, payload->>'reason' AS reason"
)


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> list[Any]:
    """Insert rows, skipping any already stored; return only the rows that were new."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        document = json.dumps(
            [{**row, "occurred_at": row["occurred_at"].isoformat()} for row in rows]
        )
        return list(session.execute(PG_INSERT, {"rows": document}).all())
    from sqlalchemy.dialects.sqlite import insert

    table = EmailEvent.__table__
    statement = (
        insert(table)
        .on_conflict_do_nothing()
        .returning(
            *(table.c[name] for name in RETURNED.split(", ")),
            EmailEvent.payload["reason"].as_string().label("reason"),
        )
    )
    return list(session.execute(statement, rows).all())


# --- suppression -------------------------------------------------------------------------------


def _action(row: Any) -> str | None:
    """What an event asks of the subscriber: a status, `soft`, `delivered`, or nothing."""
    if row.event == "bounce":
        return "bounced" if row.bounce_class == "hard" else "soft"
    if row.event == "spamreport":
        return "complained"
    if row.event in ("unsubscribe", "group_unsubscribe"):
        return "unsubscribed"
    if row.event == "delivered":
        return "delivered"
    if row.event == "dropped":
        return DROPPED_REASONS.get(str(row.reason or "").strip().lower())
    return None


def _load_subscribers(
    session: Session, rows: list[Any]
) -> tuple[dict[int, Subscriber], dict[str, Subscriber]]:
    delivery_ids = sorted({r.delivery_id for r in rows if r.delivery_id})
    via_delivery: dict[int, Subscriber] = {}
    for part in _chunks(delivery_ids):
        for d_id, subscriber in session.execute(
            select(Delivery.id, Subscriber)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.id.in_(part))
            .order_by(Subscriber.id)
            .with_for_update(of=Subscriber)
        ):
            via_delivery[d_id] = subscriber
    emails = sorted(
        {r.email.lower() for r in rows if r.email and r.delivery_id not in via_delivery}
    )
    via_email: dict[str, Subscriber] = {}
    for part in _chunks(emails):
        for subscriber in session.scalars(
            select(Subscriber)
            .where(func.lower(Subscriber.email).in_(part))
            .order_by(Subscriber.id)
            .with_for_update()
        ):
            via_email[subscriber.email.lower()] = subscriber
    return via_delivery, via_email


def _earlier_soft_bounces(session: Session, rows: list[Any]) -> set[tuple[str, Any]]:
    """Messages that had a soft bounce stored before this batch: one message counts once."""
    new_ids = [r.id for r in rows]
    delivery_ids = sorted({r.delivery_id for r in rows if r.delivery_id})
    message_ids = sorted({r.sg_message_id for r in rows if r.sg_message_id and not r.delivery_id})
    seen: set[tuple[str, Any]] = set()
    base = select(EmailEvent.delivery_id, EmailEvent.sg_message_id).where(
        EmailEvent.event == "bounce", EmailEvent.bounce_class == "soft"
    )
    for part in _chunks(delivery_ids):
        for d_id, _ in session.execute(
            base.where(EmailEvent.delivery_id.in_(part), EmailEvent.id.not_in(new_ids))
        ):
            seen.add(("d", d_id))
    for part in _chunks(message_ids):
        for _, m_id in session.execute(
            base.where(EmailEvent.sg_message_id.in_(part), EmailEvent.id.not_in(new_ids))
        ):
            seen.add(("m", m_id))
    return seen


def apply_suppression(
    session: Session, rows: list[Any], settings: Settings | None = None
) -> dict[str, int]:
    """Apply newly stored events to subscribers and suppressions, oldest first.

    Returns how many subscribers moved to each status.
    """
    settings = settings or get_settings()
    acting = [r for r in rows if _action(r)]
    if not acting:
        return {}
    acting.sort(key=lambda r: (r.occurred_at, r.id))
    via_delivery, via_email = _load_subscribers(session, acting)
    soft_bounces = [r for r in acting if _action(r) == "soft"]
    seen_soft = _earlier_soft_bounces(session, soft_bounces) if soft_bounces else set()
    suppress: dict[str, str] = {}
    changes: dict[str, int] = {}
    now = utcnow()

    for row in acting:
        action = _action(row)
        subscriber = via_delivery.get(row.delivery_id) or (
            via_email.get(row.email.lower()) if row.email else None
        )
        address = row.email or (subscriber.email if subscriber else None)
        if action == "delivered":
            if subscriber is not None and subscriber.soft_bounces:
                subscriber.soft_bounces = 0
            continue
        if action == "soft":
            key = ("d", row.delivery_id) if row.delivery_id else ("m", row.sg_message_id)
            if subscriber is None or (key[1] and key in seen_soft):
                continue
            if key[1]:
                seen_soft.add(key)
            subscriber.soft_bounces += 1
            if subscriber.soft_bounces < settings.soft_bounce_limit:
                continue
            action = "bounced"
        if action in ("bounced", "complained") and address:
            previous = suppress.get(email_hash(address))
            if previous is None or SUPPRESSION_RANK[action] > SUPPRESSION_RANK[previous]:
                suppress[email_hash(address)] = action
        if subscriber is not None and _raise_status(subscriber, action, now):
            changes[action] = changes.get(action, 0) + 1
    _suppress(session, suppress)
    return changes


def _raise_status(subscriber: Subscriber, status: str, now: datetime) -> bool:
    current = subscriber.status
    if current not in STATUS_RANK or STATUS_RANK[status] <= STATUS_RANK[current]:
        return False  # deleted rows, or already at this level or stronger
    subscriber.status = status
    if status == "unsubscribed" and subscriber.unsubscribed_at is None:
        subscriber.unsubscribed_at = now
    return True


def _suppress(session: Session, wanted: dict[str, str]) -> None:
    """Add hashed suppressions, upgrading a weaker reason (bounced → complained)."""
    hashes = sorted(wanted)
    existing: dict[str, Suppression] = {}
    for part in _chunks(hashes):
        for row in session.scalars(
            select(Suppression).where(Suppression.email_hash.in_(part)).with_for_update()
        ):
            existing[row.email_hash] = row
    for value in hashes:
        reason = wanted[value]
        row = existing.get(value)
        if row is None:
            session.add(Suppression(email_hash=value, reason=reason))
        elif SUPPRESSION_RANK[reason] > SUPPRESSION_RANK.get(row.reason, 0):
            row.reason = reason
    session.flush()


# --- machine activity --------------------------------------------------------------------------


def flag_machine_activity(
    session: Session, delivery_ids: Iterable[int], settings: Settings | None = None
) -> int:
    """Re-judge the clicks of these deliveries; returns how many clicks are now `machine`.

    Run after every batch for the deliveries it touched, so a `delivered` event that arrives after
    the clicks still gets them judged against the right time.
    """
    settings = settings or get_settings()
    window = timedelta(seconds=settings.machine_click_seconds)
    flagged = 0
    for part in _chunks(sorted(set(delivery_ids))):
        delivered: dict[int, datetime] = {}
        for d_id, sent_at in session.execute(
            select(Delivery.id, DeliveryBatch.sent_at)
            .join(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
            .where(Delivery.id.in_(part), DeliveryBatch.sent_at.is_not(None))
        ):
            delivered[d_id] = sent_at
        for d_id, first in session.execute(
            select(EmailEvent.delivery_id, func.min(EmailEvent.occurred_at))
            .where(EmailEvent.delivery_id.in_(part), EmailEvent.event == "delivered")
            .group_by(EmailEvent.delivery_id)
        ):
            delivered[d_id] = first
        clicks: dict[int, list[tuple[int, datetime, str | None, bool]]] = {}
        for e_id, d_id, at, url, machine in session.execute(
            select(
                EmailEvent.id,
                EmailEvent.delivery_id,
                EmailEvent.occurred_at,
                EmailEvent.url,
                EmailEvent.machine,
            )
            .where(EmailEvent.delivery_id.in_(part), EmailEvent.event == "click")
            .order_by(EmailEvent.occurred_at, EmailEvent.id)
        ):
            clicks.setdefault(d_id, []).append((e_id, at, url, machine))
        to_set: dict[bool, list[int]] = {True: [], False: []}
        for d_id, rows in clicks.items():
            machine_ids = _machine_clicks(rows, delivered.get(d_id), window, settings)
            for e_id, _, _, was in rows:
                now_machine = e_id in machine_ids
                flagged += now_machine
                if now_machine != was:
                    to_set[now_machine].append(e_id)
        for value, ids in to_set.items():
            for ids_part in _chunks(ids):
                session.execute(
                    update(EmailEvent).where(EmailEvent.id.in_(ids_part)).values(machine=value)
                )
    return flagged


def _machine_clicks(
    rows: list[tuple[int, datetime, str | None, bool]],
    delivered_at: datetime | None,
    window: timedelta,
    settings: Settings,
) -> set[int]:
    """Clicks no person makes: within `window` of delivery, or many links inside one window."""
    machine: set[int] = set()
    if delivered_at is not None:
        machine.update(e_id for e_id, at, _, _ in rows if at - delivered_at <= window)
    start = 0
    for end in range(len(rows)):
        while rows[end][1] - rows[start][1] > window:
            start += 1
        burst = rows[start : end + 1]
        if len({url for _, _, url, _ in burst}) >= settings.machine_click_links:
            machine.update(e_id for e_id, _, _, _ in burst)
    return machine


# --- the batch ---------------------------------------------------------------------------------


def process_batch(
    session: Session, batch_id: int, settings: Settings | None = None
) -> BatchOutcome:
    """Normalise, link, store and apply one stored webhook batch; safe to run more than once."""
    settings = settings or get_settings()
    batch = session.get(WebhookBatch, batch_id, with_for_update=True)
    if batch is None:
        raise LookupError(f"webhook batch {batch_id} does not exist")
    outcome = BatchOutcome(batch_id=batch_id)
    if batch.processed_at is not None:
        outcome.already_processed = True
        return outcome
    raw = json.loads(batch.body)
    if "\\u" in batch.body:  # escapes may carry NUL or lone surrogates, which PostgreSQL refuses
        raw = _storable(raw)
    events = [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []
    rows = [normalise(e, batch.received_at) for e in events]
    outcome.events = len(rows)
    unique = _unique_in_batch(rows)
    _forget_erased(session, batch, unique)
    outcome.linked = link(session, unique)
    inserted = _insert_new(session, unique)
    outcome.inserted = len(inserted)
    outcome.duplicates = len(rows) - len(inserted)
    outcome.status_changes = apply_suppression(session, inserted, settings)
    touched = {
        r.delivery_id for r in inserted if r.delivery_id and r.event in ("click", "delivered")
    }
    flag_machine_activity(session, touched, settings)
    batch.processed_at = utcnow()
    batch.events = len(rows)
    unknown = sorted({r.event for r in inserted if r.event not in KNOWN_EVENTS})
    if unknown:
        log.info("webhook batch %s: kept unknown event types %s", batch_id, ", ".join(unknown))
    return outcome


ERASED = "erased@invalid"


def _forget_erased(session: Session, batch: WebhookBatch, rows: list[dict[str, Any]]) -> None:
    """Events that arrive after their address was erased are stored without it.

    SendGrid keeps posting (a late open, a bounce) after "delete me"; the `deleted` suppression
    is the only trace of the address left, so it is what recognises them. The row loses its
    address, every string naming it is redacted, and so is the stored body.
    """
    addresses: dict[str, set[str]] = {}
    for row in rows:
        if row["email"]:
            addresses.setdefault(email_hash(row["email"]), set()).add(row["email"])
    erased: set[str] = set()
    for part in _chunks(sorted(addresses)):
        erased.update(
            session.scalars(
                select(Suppression.email_hash).where(
                    Suppression.email_hash.in_(part), Suppression.reason == "deleted"
                )
            )
        )
    if not erased:
        return
    forgotten = {a.lower() for h in erased for a in addresses[h]}
    for address in sorted(forgotten):
        redaction = Redaction(address=address, replacement=ERASED)
        for row in rows:
            own = bool(row["email"]) and row["email"].lower() == address
            if own:
                row["email"] = None
                row["payload"] = {k: v for k, v in row["payload"].items() if k != "email"}
            row["payload"] = redaction.json(row["payload"], own=own)
            for name in ("url", "sg_message_id"):
                if row[name]:
                    row[name] = redaction.text(row[name], own=own)
        batch.body = redact_body(batch.body, redaction)


def prune_processed_bodies(
    session: Session, retention: timedelta, now: datetime | None = None
) -> int:
    """Delete raw webhook bodies processed more than `retention` ago; returns how many.

    A processed body is no longer needed (its events are rows, deduplicated by their own keys),
    yet it holds every address it names: keeping it would undo erasure. Unprocessed bodies are
    never touched (the requeue sweep still owes them a run).
    """
    cutoff = (now or utcnow()) - retention
    result = session.execute(
        delete(WebhookBatch).where(
            WebhookBatch.processed_at.is_not(None), WebhookBatch.processed_at <= cutoff
        )
    )
    return int(result.rowcount or 0)


def pending_batches(
    session: Session, limit: int = 1000, older_than: float | None = None
) -> list[int]:
    """Ids of stored batches not processed yet (a worker was down, or a task was lost).

    `older_than` (seconds) leaves alone the bodies whose task may simply still be queued.
    """
    query = select(WebhookBatch.id).where(WebhookBatch.processed_at.is_(None))
    if older_than is not None:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        query = query.where(WebhookBatch.received_at < cutoff)
    return list(session.scalars(query.order_by(WebhookBatch.id).limit(limit)))
