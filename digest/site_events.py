"""Events for the site (`reader_vote.cast`): an outbox row, then a signed POST, at least once.

A verdict and its event are written in one transaction (`record_vote_cast`), so no verdict is
recorded without its event. A worker task then POSTs the event to `DIGEST_SITE_WEBHOOK_URL`
(`deliver`), and the row is marked delivered only after a 2xx; anything else is retried with
exponential backoff and jitter, and beat's sweeper re-queues events whose task was lost (a
worker killed mid-delivery). So the site may receive an event twice, never zero times: it
deduplicates by the event id (`X-Verdicts-Event-Id`, also `id` in the body).

Signature: `X-Verdicts-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` under
`DIGEST_SITE_WEBHOOK_SECRET`, with `X-Verdicts-Timestamp` (Unix seconds), as in the README.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from digest.db import session_scope
from digest.settings import get_settings
from schema.models import SiteEvent, utcnow

EVENT_TYPE = "reader_vote.cast"
SIGNATURE_HEADER = "X-Verdicts-Signature"
TIMESTAMP_HEADER = "X-Verdicts-Timestamp"
EVENT_ID_HEADER = "X-Verdicts-Event-Id"


def enabled() -> bool:
    """Off when `DIGEST_SITE_WEBHOOK_URL` is empty: no events are written or sent."""
    return bool(get_settings().site_webhook_url)


def record_vote_cast(
    session: Session,
    *,
    slug: str,
    tool: str,
    tool_position: int,
    choice: str,
    previous: str | None,
    reader: str,
    cast_at: datetime,
) -> int | None:
    """The outbox row of one new or changed verdict (None when the webhook is off)."""
    if not enabled():
        return None
    event_id = str(uuid.uuid4())
    payload = {
        "id": event_id,
        "type": EVENT_TYPE,
        "occurred_at": cast_at.isoformat(),
        "data": {
            "slug": slug,
            "tool": tool,
            "tool_position": tool_position,
            "choice": choice,
            "previous": previous,
            "reader": reader,
        },
    }
    row = SiteEvent(event_id=event_id, type=EVENT_TYPE, payload=payload, created_at=cast_at)
    session.add(row)
    session.flush()
    return row.id


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256 of `timestamp + "." + body` (what the site recomputes)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


@dataclass(frozen=True)
class DeliveryOutcome:
    """`delivered`, `retry` (after `retry_in` seconds), `failed` (for now), `off`, `missing`."""

    status: str
    retry_in: float | None = None


_client_lock = threading.Lock()
_clients: dict[float, httpx.Client] = {}


def _client(timeout: float) -> httpx.Client:
    """One pooled client per process (keep-alive to the site across events)."""
    with _client_lock:
        client = _clients.get(timeout)
        if client is None:
            client = _clients[timeout] = httpx.Client(timeout=timeout)
        return client


def retry_delay(attempts: int) -> float:
    """Exponential backoff with full jitter in its upper half, capped."""
    settings = get_settings()
    base = settings.site_webhook_retry_base_delay * 2 ** max(0, attempts - 1)
    capped = min(settings.site_webhook_retry_max_delay, base)
    return capped * random.uniform(0.5, 1.0)


def deliver(event_row_id: int) -> DeliveryOutcome:
    """POST one event; mark it delivered only after a 2xx. No transaction is held open during
    the request."""
    settings = get_settings()
    if not settings.site_webhook_url:
        return DeliveryOutcome("off")
    with session_scope() as session:
        row = session.get(SiteEvent, event_row_id)
        if row is None:
            return DeliveryOutcome("missing")
        if row.delivered_at is not None:
            return DeliveryOutcome("delivered")
        payload = row.payload
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: str(payload["id"]),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(settings.site_webhook_secret, timestamp, body),
    }
    error = None
    try:
        response = _client(settings.site_webhook_timeout).post(
            settings.site_webhook_url, content=body, headers=headers
        )
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    attempts = _record_attempt(event_row_id, error)
    if error is None:
        return DeliveryOutcome("delivered")
    if attempts % settings.site_webhook_max_attempts == 0:
        return DeliveryOutcome("failed")  # this task gives up; beat's sweeper tries again later
    return DeliveryOutcome("retry", retry_delay(attempts % settings.site_webhook_max_attempts))


def _record_attempt(event_row_id: int, error: str | None) -> int:
    with session_scope() as session:
        values: dict[str, object] = {"attempts": SiteEvent.attempts + 1, "last_error": error}
        if error is None:
            values["delivered_at"] = utcnow()
        session.execute(update(SiteEvent).where(SiteEvent.id == event_row_id).values(**values))
        attempts = session.scalar(select(SiteEvent.attempts).where(SiteEvent.id == event_row_id))
    return int(attempts or 0)


def undelivered(session: Session, older_than: float) -> list[int]:
    """Events not delivered, written more than `older_than` seconds ago, and not in a task's
    retry cycle: never tried (the task was lost with a worker or the broker) or given up after
    a round of DIGEST_SITE_WEBHOOK_MAX_ATTEMPTS. Queueing one twice is harmless."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    rounds = get_settings().site_webhook_max_attempts
    return list(
        session.scalars(
            select(SiteEvent.id)
            .where(
                SiteEvent.delivered_at.is_(None),
                SiteEvent.created_at < cutoff,
                or_(SiteEvent.attempts == 0, SiteEvent.attempts % rounds == 0),
            )
            .order_by(SiteEvent.id)
            .limit(10_000)
        )
    )


@dataclass(frozen=True)
class WebhookHealth:
    """For `digest status` and the console: what is waiting and why the last try failed."""

    enabled: bool
    delivered: int
    waiting: int
    failing: int  # waiting with at least one failed attempt
    last_error: str | None
    oldest_waiting_at: datetime | None = None  # when the longest-waiting event was written


def health(session: Session) -> WebhookHealth:
    """Delivered, waiting and failing events in one pass, the oldest still waiting, and the
    newest error (digest/attention.py turns a failure or a backlog into a dashboard item)."""
    delivered, waiting, failing, oldest = session.execute(
        select(
            func.count(SiteEvent.delivered_at),
            func.count().filter(SiteEvent.delivered_at.is_(None)),
            func.count().filter(SiteEvent.delivered_at.is_(None), SiteEvent.attempts > 0),
            func.min(SiteEvent.created_at).filter(SiteEvent.delivered_at.is_(None)),
        )
    ).one()
    last_error = session.scalar(
        select(SiteEvent.last_error)
        .where(SiteEvent.delivered_at.is_(None), SiteEvent.last_error.is_not(None))
        .order_by(SiteEvent.id.desc())
        .limit(1)
    )
    return WebhookHealth(enabled(), delivered, waiting, failing, last_error, oldest)
