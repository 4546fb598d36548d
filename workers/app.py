"""The Celery application and its configuration.

With `DIGEST_BROKER_URL` empty, tasks run in-process (`task_always_eager`): the embedded default
uses the very same task functions as production, just without a broker.
"""

from __future__ import annotations

from celery import Celery

from digest.settings import get_settings

# Longer than any retry delay or countdown we use, so Redis never redelivers a task that is
# merely waiting (kombu's Redis transport re-queues unacked messages after this many seconds).
VISIBILITY_TIMEOUT = 2 * 3600


def make_app() -> Celery:
    settings = get_settings()
    eager = not settings.broker_url
    celery = Celery("workers", include=["workers.tasks"])
    celery.conf.update(
        broker_url=settings.broker_url or "memory://",
        task_always_eager=eager,
        task_eager_propagates=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone=settings.timezone,
        enable_utc=True,
        worker_hijack_root_logger=False,
        # Each tick checks whether a timezone wave of the weekly digest is due
        # (digest/schedule.py); a tick nobody ran in time is dropped, the next does its work.
        beat_schedule={
            "digest.fire_weekly_slots": {
                "task": "digest.fire_weekly_slots",
                "schedule": settings.beat_interval,
                "options": {"expires": settings.beat_interval},
            }
        },
    )
    return celery


app = make_app()
