"""The Celery application and its configuration.

With `DIGEST_BROKER_URL` empty, tasks run in-process (`task_always_eager`): the embedded default
uses the very same task functions as production, just without a broker.
"""

from __future__ import annotations

from celery import Celery

from digest.settings import Settings, get_settings

# The default DIGEST_VISIBILITY_TIMEOUT (seconds), for checks that compare retry caps with it.
VISIBILITY_TIMEOUT = Settings.model_fields["visibility_timeout"].default


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
        # DIGEST_VISIBILITY_TIMEOUT: longer than any retry delay or countdown, so Redis never
        # redelivers a task that is merely waiting; a dead worker's tasks come back after it.
        # kombu sweeps for such tasks every interval × throttle seconds (default 100 s): keep
        # the sweep at about a tenth of the timeout so short timeouts (tests) recover quickly.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": max(1, min(10, round(settings.visibility_timeout / 10))),
            "unacked_restore_throttle": 1 if settings.visibility_timeout < 1000 else 10,
        },
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
