"""Celery tasks: thin, explicitly named wrappers that take ids and call one domain function.

Every task here opens its own database session through the domain function it calls; retry
policy is declared on the task, business rules live in `digest/`.
"""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from digest import transactional
from digest.db import session_scope
from digest.email_backends import TransientSendError
from digest.tracking import process_batch
from workers.app import app

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
    with session_scope() as session:
        return process_batch(session, batch_id).inserted


# --- subscriber emails: confirmation, welcome, goodbye (digest/transactional.py) ----------------

_TRANSACTIONAL_RETRY = {
    "acks_late": True,
    "autoretry_for": (TransientSendError, OperationalError),
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
