"""SendGrid delivery events: turn one stored, verified webhook body into rows and consequences.

`process_batch` is the pipeline, safe to run more than once on the same body:

1. normalise each event object and drop repeats inside the body (`digest.webhook_events`);
2. forget addresses that were erased (the `deleted` suppression recognises them) before storing;
3. link each event to its delivery (`digest.webhook_events.link`);
4. insert with `ON CONFLICT DO NOTHING` (`digest.event_store`): only rows actually inserted
   have consequences, so a batch delivered (or processed) twice counts once;
5. apply what the new events mean to the list (`digest.event_suppression`);
6. re-judge the touched deliveries' clicks for machine activity (`digest.machine_activity`).
"""

from __future__ import annotations

import gc
import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest.addresses import email_hash, suppressed_hashes
from digest.event_store import StoredEvent, insert_new
from digest.event_suppression import apply_suppression
from digest.machine_activity import flag_machine_activity
from digest.redaction import Redaction, redact_body
from digest.settings import Settings, get_settings
from digest.webhook_events import KNOWN_EVENTS, link, normalise, storable, unique_in_batch
from schema.models import WebhookBatch, utcnow
from schema.statuses import SuppressionReason

__all__ = [  # the steps live in their own modules; these names stay importable here
    "WebhookBatchOutcome",
    "apply_suppression",
    "flag_machine_activity",
    "link",
    "normalise",
    "pending_batches",
    "process_batch",
    "prune_processed_bodies",
]

log = logging.getLogger(__name__)

ERASED = "erased@invalid"


@dataclass
class WebhookBatchOutcome:
    """What processing one webhook batch did (not `sending.BatchOutcome`, a delivery batch's)."""

    batch_id: int
    events: int = 0
    inserted: int = 0
    duplicates: int = 0
    linked: int = 0
    already_processed: bool = False
    status_changes: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)  # new events, for the metrics
    lag_seconds: float = 0.0  # from receiving the body to processing it


# --- the batch ---------------------------------------------------------------------------------


def process_batch(
    session: Session, batch_id: int, settings: Settings | None = None
) -> WebhookBatchOutcome:
    """Normalise, link, store and apply one stored webhook batch; safe to run more than once."""
    settings = settings or get_settings()
    batch = session.get(WebhookBatch, batch_id, with_for_update=True)
    if batch is None:
        raise LookupError(f"webhook batch {batch_id} does not exist")
    outcome = WebhookBatchOutcome(batch_id=batch_id)
    if batch.processed_at is not None:
        outcome.already_processed = True
        return outcome
    with _cyclic_gc_paused():
        inserted = _store_events(session, batch, outcome)
        outcome.status_changes = apply_suppression(session, inserted, settings)
        touched = {
            r.delivery_id for r in inserted if r.delivery_id and r.event in ("click", "delivered")
        }
        flag_machine_activity(session, touched, settings)
    batch.processed_at = utcnow()
    batch.events = outcome.events
    outcome.by_type = dict(Counter(r.event for r in inserted))
    outcome.lag_seconds = (batch.processed_at - batch.received_at).total_seconds()
    unknown = sorted({r.event for r in inserted if r.event not in KNOWN_EVENTS})
    if unknown:
        log.info("webhook batch %s: kept unknown event types %s", batch_id, ", ".join(unknown))
    return outcome


def _store_events(
    session: Session, batch: WebhookBatch, outcome: WebhookBatchOutcome
) -> list[StoredEvent]:
    """The body's events normalised, deduplicated, linked and stored; returns the new ones."""
    raw = _parse(batch.body)
    if "\\u" in batch.body:  # escapes may carry NUL or lone surrogates, which PostgreSQL refuses
        raw = storable(raw)
    events = [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []
    rows = [normalise(e, batch.received_at) for e in events]
    outcome.events = len(rows)
    unique = unique_in_batch(rows)
    _forget_erased(session, batch, unique)
    outcome.linked = link(session, unique)
    inserted = insert_new(session, unique)
    outcome.inserted = len(inserted)
    outcome.duplicates = len(rows) - len(inserted)
    return inserted


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cycle collector off while a batch is processed, then back as it was.

    A 15,000-event body becomes some 300,000 objects (parsed events, rows, keys) that live until
    the batch ends and form no cycles; the collector kept re-scanning them as they were made, a
    tenth of the batch's Python time. Whatever cycles appear meanwhile are collected after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(body: str) -> Any:
    """A stored (verified) body. orjson parses in a quarter of the stdlib's time; a body it
    refuses but the stdlib accepted at the door (lone surrogates, NaN, huge integers) is read
    as the door read it."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _forget_erased(session: Session, batch: WebhookBatch, rows: list[dict[str, Any]]) -> None:
    """Events that arrive after their address was erased are stored without it.

    SendGrid keeps posting (a late open, a bounce) after "delete me"; the `deleted` suppression
    is the only trace of the address left, so it is what recognises them. The row loses its
    address, every string naming it is redacted, and so is the stored body.
    """
    addresses: dict[str, set[str]] = {}
    for address in {row["email"] for row in rows if row["email"]}:  # each address hashed once
        addresses.setdefault(email_hash(address), set()).add(address)
    erased = suppressed_hashes(session, addresses, reason=SuppressionReason.DELETED)
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
