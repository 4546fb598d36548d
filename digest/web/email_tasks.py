"""The subscriber pages' transactional emails, handed to Celery after the database commit.

The web layer is an entry point that may talk to Celery; the domain in `digest/` does not. On
the embedded default (no broker) a task runs inside `.delay()`, in the request.
"""

from __future__ import annotations

import logging

from digest import subscriptions
from digest.db import session_scope
from workers import tasks
from workers.app import app as celery_app
from workers.publish import enqueue, enqueue_ids

log = logging.getLogger(__name__)

TASKS = {
    "confirmation": tasks.send_confirmation,
    "welcome": tasks.send_welcome,
    "goodbye": tasks.send_goodbye,
    "data_link": tasks.send_data_link,
}


def queue_email(kind: str, subscriber_id: int) -> None:
    """Queue a transactional email task (runs in-process when no broker is configured)."""
    enqueue(TASKS[kind].s(subscriber_id))


def tasks_run_in_process() -> bool:
    """True on the embedded default: no broker, so Celery runs a task inside `.delay()`."""
    return bool(celery_app.conf.task_always_eager)


def send_confirmation_after_response(subscriber_id: int) -> None:
    """The embedded default's confirmation, run by Starlette once the answer has gone out.

    Sending in the request would make a new address measurably slower to answer than a known
    one, telling a prober who is subscribed. A failure releases the claim, as a broker outage
    does in `queue_confirmations`, so the next signup of the address sends.
    """
    try:
        tasks.send_confirmation.delay(subscriber_id)
    except Exception:
        log.exception("could not send the confirmation for subscriber %s", subscriber_id)
        with session_scope() as session:
            subscriptions.release_confirmation(session, subscriber_id)


def queue_confirmations(subscriber_ids: list[int]) -> None:
    """Queue confirmation tasks after the commit, in one broker round trip (one LPUSH).

    If the broker is down the answer stays the same as an active address's (anything else would
    reveal who is subscribed); the claims are released so that the next try sends, and the outage
    shows in the log and in /healthz.
    """
    try:
        enqueue_ids(tasks.send_confirmation.name, subscriber_ids)
    except Exception:  # BrokerUnavailable, or an in-process send that failed
        log.exception("could not queue confirmations for subscribers %s", subscriber_ids)
        with session_scope() as session:
            for subscriber_id in subscriber_ids:
                subscriptions.release_confirmation(session, subscriber_id)
