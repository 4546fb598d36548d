"""Celery tasks: thin, explicitly named wrappers that take ids and call one domain function.

Every task here opens its own database session through the domain function it calls; retry
policy is declared on the task, business rules live in `digest/`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from celery import Task
from sqlalchemy.exc import OperationalError

from digest import (
    alerts,
    list_imports,
    metrics,
    operations,
    planning,
    sending,
    site_events,
    transactional,
    weekly,
)
from digest.db import session_scope
from digest.email_backends import DeliveryUnknown, NotTaken
from digest.settings import get_settings
from digest.tracking import pending_batches, process_batch, prune_processed_bodies
from workers.app import app
from workers.publish import enqueue

__all__ = ["app"]


@app.task(
    name="digest.process_webhook_batch",
    acks_late=True,
    autoretry_for=(OperationalError,),  # deadlocks and lost connections: try again
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def process_webhook_batch(batch_id: int) -> int:
    """Turn one stored SendGrid webhook body into events, suppressions and flags."""
    try:
        with session_scope() as session:
            outcome = process_batch(session, batch_id)
    except LookupError:  # processed and pruned already (a redelivered task): nothing to do
        return 0
    if not outcome.already_processed:  # counted after the commit, once per body
        metrics.recorder().webhook_batch(outcome.by_type, outcome.lag_seconds)
    return outcome.inserted


@app.task(name="digest.requeue_unprocessed_webhooks", acks_late=True)
def requeue_unprocessed_webhooks() -> list[int]:
    """Stored webhook bodies nobody processed (a task lost with the broker): queue them again.

    Processing is idempotent (events are deduplicated), so a body queued twice counts once.
    """
    with session_scope() as session:
        batch_ids = pending_batches(session, older_than=get_settings().webhook_requeue_after)
    enqueue(*(process_webhook_batch.s(batch_id) for batch_id in batch_ids))
    return batch_ids


@app.task(name="digest.prune_webhook_bodies", acks_late=True)
def prune_webhook_bodies() -> int:
    """Raw webhook bodies processed longer ago than the retention are deleted (they hold
    addresses, and their events are rows now)."""
    hours = get_settings().webhook_body_retention_hours
    with session_scope() as session:
        return prune_processed_bodies(session, timedelta(hours=hours))


# --- dispatch: sending planned batches (digest/sending.py, digest/operations.py) ---------------


def _until_done(task: Task, step: Callable[[], tuple[str, float | None]]) -> str:
    """Run a domain step that may ask to be retried after a delay (its own backoff policy).

    With a broker the task is retried by Celery after the delay; in-process (no broker) an
    eager retry would raise to the caller, so the step is waited for and run again here.
    """
    while True:
        status, retry_in = step()
        if retry_in is None:
            return status
        if not task.request.is_eager:
            raise task.retry(countdown=retry_in)
        time.sleep(retry_in)


# Tasks whose domain step keeps its own attempt count (the ledger, the site-event outbox), so
# Celery's retry limit stays off. A lost database connection (failover, pg_terminate_backend)
# rolled the step back: try again soon rather than leave the row to a sweep much later. A retry
# after a request went out finds the claim (or the delivered mark) and stops.
_STEP_RETRY = {
    "bind": True,
    "acks_late": True,
    "max_retries": None,
    "autoretry_for": (OperationalError,),
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


@app.task(name="digest.send_batch", **_STEP_RETRY)
def send_batch(self, batch_id: int) -> str:
    """Send one planned batch exactly once. The ledger counts attempts and gives up after
    DIGEST_SEND_MAX_ATTEMPTS, so Celery's own retry limit stays off; the retry delay is capped
    below the broker's visibility timeout (see workers/app.py)."""

    def step() -> tuple[str, float | None]:
        outcome = sending.send_batch(batch_id)
        enqueue(*(send_batch.s(other) for other in outcome.enqueue))
        return outcome.status.value, outcome.retry_in

    return _until_done(self, step)


@app.task(name="digest.reap_stale_claims", acks_late=True)
def reap_stale_claims() -> list[int]:
    """Batches left `sending` by a lost worker become ambiguous (never resent silently)."""
    with session_scope() as session:
        return operations.reap_stale_claims(session, get_settings().send_claim_timeout)


@app.task(name="digest.requeue_orphaned_batches", acks_late=True)
def requeue_orphaned_batches() -> list[int]:
    """Enqueue pending batches whose task was lost; a duplicate task finds the claim and stops."""
    with session_scope() as session:
        batch_ids = operations.requeue_orphaned_batches(session, get_settings().send_orphan_after)
    enqueue(*(send_batch.s(batch_id) for batch_id in batch_ids))
    return batch_ids


# --- the site's events: readers' verdicts (digest/site_events.py) ------------------------------


@app.task(name="digest.deliver_site_event", **_STEP_RETRY)
def deliver_site_event(self, event_row_id: int) -> str:
    """POST one `reader_vote.cast` event, signed; retried with backoff and jitter for one round
    of DIGEST_SITE_WEBHOOK_MAX_ATTEMPTS, then left to the sweeper (at least once)."""

    def step() -> tuple[str, float | None]:
        outcome = site_events.deliver(event_row_id)
        return outcome.status, outcome.retry_in

    return _until_done(self, step)


@app.task(name="digest.requeue_site_events", acks_late=True)
def requeue_site_events() -> list[int]:
    """Undelivered site events whose task was lost or gave up: queue them again."""
    with session_scope() as session:
        ids = site_events.undelivered(session, get_settings().site_webhook_requeue_after)
    enqueue(*(deliver_site_event.s(event_row_id) for event_row_id in ids))
    return ids


# --- subscriber emails: confirmation, welcome, goodbye, data link (digest/transactional.py) ----

_TRANSACTIONAL_RETRY = {
    "acks_late": True,
    # NotTaken: SendGrid did not take the email, a retry is safe. DeliveryUnknown: it may have
    # taken it; retried anyway because one duplicate confirmation/welcome/goodbye/data link is
    # harmless, unlike a digest batch (never retried on it: digest/sending.py). OperationalError:
    # the subscriber read rolled back.
    "autoretry_for": (NotTaken, DeliveryUnknown, OperationalError),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 6,
}


@app.task(name="digest.send_confirmation", **_TRANSACTIONAL_RETRY)
def send_confirmation(subscriber_id: int) -> bool:
    """The double opt-in email; skipped if the subscriber is no longer pending."""
    return transactional.send_confirmation(subscriber_id)


@app.task(name="digest.send_welcome", **_TRANSACTIONAL_RETRY)
def send_welcome(subscriber_id: int) -> bool:
    """The first email after confirming; skipped unless the subscriber is active."""
    return transactional.send_welcome(subscriber_id)


@app.task(name="digest.send_goodbye", **_TRANSACTIONAL_RETRY)
def send_goodbye(subscriber_id: int) -> bool:
    """The note after unsubscribing; skipped unless the subscriber is still unsubscribed."""
    return transactional.send_goodbye(subscriber_id)


@app.task(name="digest.send_data_link", **_TRANSACTIONAL_RETRY)
def send_data_link(subscriber_id: int) -> bool:
    """The expiring export/delete link, asked for on the preferences page; never if erased."""
    return transactional.send_data_link(subscriber_id)


# --- planning: weekly waves, ad hoc digests, alerts (digest/weekly.py, planning.py, alerts.py) --


def dispatch_batches(batch_ids: list[int]) -> None:
    """One `digest.send_batch` task per batch, in one publish: the database tracks the end.

    Entry points (CLI, admin API, demo) call this after the plan is committed; it raises
    `workers.publish.BrokerUnavailable` when the broker cannot be reached (the batches stay
    `pending`; the orphan sweep queues them again after DIGEST_SEND_ORPHAN_AFTER).
    """
    enqueue(*(send_batch.s(batch_id) for batch_id in batch_ids))


_PLANNING_RETRY = {
    "acks_late": True,
    "autoretry_for": (OperationalError,),  # lost connections, deadlocks: the plan rolled back
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


@app.task(name="digest.fire_weekly_slots", **_PLANNING_RETRY)
def fire_weekly_slots() -> list[int]:
    """Beat's tick: plan each timezone wave whose weekly slot is due, then send its batches."""
    metrics.recorder().beat_tick(time.time())
    reports = weekly.fire_weekly_slots()
    dispatch_batches([batch_id for report in reports for batch_id in report.batch_ids])
    return [report.digest_id for report in reports]


@app.task(name="digest.plan_digest", **_PLANNING_RETRY)
def plan_digest(digest_id: int) -> str:
    """Plan a requested digest (admin API), then send its batches.

    Idempotent, so queueing it twice is harmless (the sweeper below relies on it): the digest
    row is locked and planned only while still `planned`; a second task waits for the first
    planner's commit, finds it `sending` (or `cancelled`) and returns "already planned".
    """
    report = planning.plan_digest_id(digest_id)
    if report is None:
        return "already planned"
    dispatch_batches(report.batch_ids)
    return report.status


@app.task(name="digest.requeue_planned_digests", acks_late=True)
def requeue_planned_digests() -> list[int]:
    """Digests left `planned` longer than DIGEST_PLAN_REQUEUE_AFTER lost their planning task:
    queue it again (beat). A digest being planned right now is locked and skipped."""
    with session_scope() as session:
        digest_ids = operations.requeue_planned_digests(session, get_settings().plan_requeue_after)
    enqueue(*(plan_digest.s(digest_id) for digest_id in digest_ids))
    return digest_ids


@app.task(name="digest.plan_alert", **_PLANNING_RETRY)
def plan_alert(comparison_id: int) -> str:
    """A newly published comparison: alert the subscribers who want every one."""
    report = alerts.plan_alert(comparison_id)
    if report is None:
        return "no alert"
    dispatch_batches(report.batch_ids)
    return report.status


# --- subscriber lists uploaded in the console (digest/list_imports.py) -------------------------


@app.task(
    name="digest.import_list",
    acks_late=True,
    autoretry_for=(OperationalError,),  # the chunk rolled back; the import resumes after it
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def import_list(import_id: int) -> str:
    """Import one uploaded list in chunks; a second task for the same import stops at once."""
    status = list_imports.run_import(import_id)
    return status.value if status else "nothing to do"


@app.task(name="digest.requeue_stalled_imports", acks_late=True)
def requeue_stalled_imports() -> list[int]:
    """Imports with no progress for DIGEST_LIST_IMPORT_REQUEUE_AFTER (broker down at upload, a
    worker killed mid-file): queue them again; each resumes after its last committed line."""
    with session_scope() as session:
        ids = list_imports.stalled_imports(session, get_settings().list_import_requeue_after)
    enqueue(*(import_list.s(import_id) for import_id in ids))
    return ids
