"""SendGrid's delivery events as `email_events` rows: normalised, then linked to our deliveries.

- **Normalising.** Every event object becomes a row whatever it holds: unknown event types keep
  their name, an unusable timestamp falls back to the time the batch was received, NUL and lone
  surrogates are dropped (PostgreSQL refuses them), so nothing in a batch can make it fail.
- **At least once.** SendGrid redelivers. `dedupe_key`, the table's one idempotency key, is a
  128-bit hash of (message id, address, event, timestamp, URL): the URL is part of it because one
  recipient can click two links in the same second, and those are two clicks. It also catches an
  event resent under a new `sg_event_id`. An event without a message id is keyed by its
  `sg_event_id` (SendGrid's documented dedupe id) instead; one with neither is never a duplicate.
  One unique key, not two: checking and maintaining a second one (`sg_event_id`) was a third of
  the events' INSERT (Benchmarks, Webhooks).
- **Linking.** Each event is tied to its delivery through the `custom_args` the dispatcher put on
  the personalization (SendGrid copies them to the top level of every event: `digest_id`,
  `delivery_id`), accepted only when the delivery exists and agrees on digest and address (so
  another environment's ids sharing the SendGrid account cannot attach to ours). Failing that, the
  `sg_message_id` prefix (our batch's `X-Message-Id`) plus the address finds it. Events for unknown
  deliveries are still stored, unlinked.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.key_lists import among, key_parts
from schema.models import Delivery, DeliveryBatch, Digest, Subscriber

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
MAX_ID = 2**63 - 1


# --- normalising -------------------------------------------------------------------------------


def _text(value: Any, limit: int) -> str | None:
    if type(value) is str and "\x00" not in value:  # the usual case, without copies
        cleaned = value.strip()
    elif value is None or isinstance(value, dict | list):
        return None
    else:
        cleaned = str(value).replace("\x00", "").strip()  # PostgreSQL text cannot hold NUL
    return cleaned[:limit] if cleaned else None


def _positive_id(value: Any) -> int | None:
    """custom_args arrive as strings (SendGrid stringifies them); anything odd links to nothing."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value if type(value) is str else str(value).strip())  # int() strips too
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def _occurred_at(value: Any, fallback: datetime) -> tuple[datetime, int]:
    """When the event happened, and as whole Unix seconds (for the dedupe key)."""
    try:
        seconds = value if type(value) is int else int(float(value))
        return _utc(seconds), seconds
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback, int(fallback.timestamp())


@lru_cache(maxsize=4096)
def _utc(seconds: int) -> datetime:
    """Whole seconds as a UTC datetime; a body's events share few seconds, so each is made once."""
    return datetime.fromtimestamp(seconds, UTC)


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


def dedupe_key(
    message_id: str | None,
    email: str | None,
    event: str,
    ts: int,
    url: str | None,
    event_id: str | None = None,
) -> str | None:
    """The event's idempotency key as 32 hex digits (a UUID's 128 bits), or None.

    Keyed by what happened (message, address, event, second, URL) when there is a message id;
    else by SendGrid's `sg_event_id`; else nothing identifies a repeat. The fields are joined by
    the unit separator (U+001F), which SendGrid's fields do not hold; one that does is hashed as
    JSON instead, so no two different events can share an input. The two kinds hash
    differently-shaped inputs (four separators against one), so they cannot meet either.
    """
    if message_id:
        parts: tuple[str, ...] = (message_id, (email or "").lower(), event, str(ts), url or "")
    elif event_id:
        parts = ("sg_event_id", event_id)
    else:
        return None
    joined = "\x1f".join(parts)
    if joined.count("\x1f") != len(parts) - 1:
        joined = "json\x1f" + json.dumps(parts)  # escapes U+001F: one separator, unlike both
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def normalise(raw: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    """One SendGrid event object as an `email_events` row (before linking).

    Unknown event types keep their name; a missing or unusable timestamp falls back to the time
    the batch was received, so nothing in a batch can make it fail.
    """
    event = _text(raw.get("event"), 30) or "unknown"
    email = _text(raw.get("email"), 320)
    occurred_at, ts = _occurred_at(raw.get("timestamp"), received_at)
    message_id = _text(raw.get("sg_message_id"), 200)
    url = _text(raw.get("url"), 10_000) if event == "click" else None
    event_id = _text(raw.get("sg_event_id"), 1000)
    if event_id and len(event_id) > 100:
        event_id = hashlib.sha256(event_id.encode()).hexdigest()
    return {
        "sg_event_id": event_id,
        "sg_message_id": message_id,
        "dedupe_key": dedupe_key(message_id, email, event, ts, url, event_id),
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


def unique_in_batch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats inside one body before the database sees them (cheaper than conflicts)."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = row["dedupe_key"]
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        unique.append(row)
    return unique


def storable(value: Any) -> Any:
    """The same JSON without NUL characters and with lone surrogates replaced."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


# --- linking -----------------------------------------------------------------------------------


def link(session: Session, rows: list[dict[str, Any]]) -> int:
    """Fill `delivery_id`/`digest_id` with ids that exist and agree; returns how many linked."""
    deliveries = _deliveries_named(session, rows)
    unlinked = [
        r
        for r in rows
        if not _agrees(r, deliveries.get(r["delivery_id"])) and r["sg_message_id"] and r["email"]
    ]
    by_message = _deliveries_by_message(session, unlinked)
    digests: set[int] = set()
    for part in key_parts(session, (r["digest_id"] for r in rows if r["digest_id"])):
        digests.update(session.scalars(select(Digest.id).where(among(session, Digest.id, part))))

    linked = 0
    for row in rows:
        found = deliveries.get(row["delivery_id"])
        if _agrees(row, found):
            row["digest_id"] = found[0]  # type: ignore[index]
        else:
            row["delivery_id"] = None
            key = _message_key(row)
            if key in by_message:
                row["delivery_id"], row["digest_id"] = by_message[key]
            elif row["digest_id"] not in digests:
                row["digest_id"] = None
        linked += row["delivery_id"] is not None
    return linked


def _deliveries_named(session: Session, rows: list[dict[str, Any]]) -> dict[int, tuple[int, str]]:
    """The deliveries the events' `delivery_id`s name: id -> (digest id, lower-cased address)."""
    wanted = (r["delivery_id"] for r in rows if r["delivery_id"])
    deliveries: dict[int, tuple[int, str]] = {}
    for part in key_parts(session, wanted):
        for d_id, digest_id, email in session.execute(
            select(Delivery.id, Delivery.digest_id, Delivery.email).where(
                among(session, Delivery.id, part)
            )
        ).all():
            deliveries[d_id] = (digest_id, email.lower())
    return deliveries


def _message_key(row: dict[str, Any]) -> tuple[str, str] | None:
    """(our batch's message id, lower-cased address) for an event that names both."""
    if not (row["sg_message_id"] and row["email"]):
        return None
    return row["sg_message_id"].split(".", 1)[0], row["email"].lower()


def _deliveries_by_message(
    session: Session, unlinked: list[dict[str, Any]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(message id, address) -> (delivery id, digest id), through our batches' message ids.

    The rows are reached through the subscriber with that address today and the unique
    (digest, subscriber) key (deliveries have no batch index since migration 0016), and must
    still carry the address themselves: an event for an address its subscriber has since
    changed stays unlinked."""
    by_message: dict[tuple[str, str], tuple[int, int]] = {}
    prefixes = {r["sg_message_id"].split(".", 1)[0] for r in unlinked}
    for part in key_parts(session, prefixes):
        batches = session.execute(
            select(DeliveryBatch.id, DeliveryBatch.message_id, DeliveryBatch.digest_id).where(
                among(session, DeliveryBatch.message_id, part)
            )
        ).all()
        if not batches:
            continue
        message_of = {batch_id: message_id for batch_id, message_id, _ in batches}
        digest_ids = sorted({digest_id for _, _, digest_id in batches})
        for email_part in key_parts(session, (r["email"].lower() for r in unlinked)):
            subscribers = select(Subscriber.id).where(
                among(session, func.lower(Subscriber.email), email_part)
            )
            for d_id, digest_id, batch_id, email in session.execute(
                select(Delivery.id, Delivery.digest_id, Delivery.batch_id, Delivery.email).where(
                    Delivery.digest_id.in_(digest_ids),
                    Delivery.subscriber_id.in_(subscribers),
                    Delivery.batch_id.in_(list(message_of)),
                    among(session, func.lower(Delivery.email), email_part),
                )
            ):
                by_message[(message_of[batch_id], email.lower())] = (d_id, digest_id)
    return by_message


def _agrees(row: dict[str, Any], found: tuple[int, str] | None) -> bool:
    if found is None:
        return False
    digest_id, email = found
    if row["digest_id"] and row["digest_id"] != digest_id:
        return False
    return not (row["email"] and row["email"].lower() != email)
