"""The Celery application and its configuration.

With `DIGEST_BROKER_URL` empty, tasks run in-process (`task_always_eager`): the embedded default
uses the very same task functions as production, just without a broker.
"""

from __future__ import annotations

import gc
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from digest.settings import Settings, get_settings

# The default DIGEST_VISIBILITY_TIMEOUT (seconds), for checks that compare retry caps with it.
VISIBILITY_TIMEOUT = Settings.model_fields["visibility_timeout"].default
# Seconds to wait for the broker's TCP connection before a publish counts as failed.
BROKER_CONNECT_TIMEOUT = 3.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every periodic job, in one place. Each checks the database for due work, so a tick
    nobody ran in time (expired) is simply done by the next one."""
    return {
        # a timezone wave of the weekly digest is due (digest/schedule.py)
        "digest.fire_weekly_slots": {
            "task": "digest.fire_weekly_slots",
            "schedule": settings.beat_interval,
            "options": {"expires": settings.beat_interval},
        },
        # batches left `sending` by a lost worker become ambiguous (digest/operations.py)
        "digest.reap_stale_claims": {
            "task": "digest.reap_stale_claims",
            "schedule": settings.send_reap_interval,
            "options": {"expires": settings.send_reap_interval},
        },
        # pending batches whose task was lost are queued again; the claim stops duplicates
        "digest.requeue_orphaned_batches": {
            "task": "digest.requeue_orphaned_batches",
            "schedule": settings.send_orphan_after / 2,
        },
        # ad hoc digests left `planned` whose planning task was lost are queued again
        "digest.requeue_planned_digests": {
            "task": "digest.requeue_planned_digests",
            "schedule": max(5.0, settings.plan_requeue_after / 3),
            "options": {"expires": max(5.0, settings.plan_requeue_after / 3)},
        },
        # stored webhook bodies whose processing task was lost are queued again
        "digest.requeue_unprocessed_webhooks": {
            "task": "digest.requeue_unprocessed_webhooks",
            "schedule": settings.webhook_requeue_after,
            "options": {"expires": settings.webhook_requeue_after},
        },
        # site events (readers' verdicts) not delivered: lost or given-up tasks queued again
        "digest.requeue_site_events": {
            "task": "digest.requeue_site_events",
            "schedule": max(5.0, settings.site_webhook_requeue_after / 3),
            "options": {"expires": max(5.0, settings.site_webhook_requeue_after / 3)},
        },
        # console list imports with no progress (task lost, worker killed) are queued again
        "digest.requeue_stalled_imports": {
            "task": "digest.requeue_stalled_imports",
            "schedule": max(5.0, settings.list_import_requeue_after / 3),
            "options": {"expires": max(5.0, settings.list_import_requeue_after / 3)},
        },
        # processed webhook bodies past DIGEST_WEBHOOK_BODY_RETENTION_HOURS are deleted
        "digest.prune_webhook_bodies": {
            "task": "digest.prune_webhook_bodies",
            "schedule": settings.webhook_prune_interval,
            "options": {"expires": settings.webhook_prune_interval},
        },
    }


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
            # A broker host that drops packets must not hang a request that publishes: give
            # up connecting after a few seconds (workers/publish.py raises BrokerUnavailable).
            "socket_connect_timeout": BROKER_CONNECT_TIMEOUT,
        },
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone=settings.timezone,
        enable_utc=True,
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(settings),
    )
    return celery


app = make_app()


@worker_init.connect
def _freeze_before_fork(**_: Any) -> None:
    """In the worker's main process, before the pool forks: everything imported so far is moved
    out of the collector's reach, so no collection in a child writes to those objects' pages
    and the children keep sharing them with the parent (lower PSS per worker tree)."""
    gc.freeze()


@worker_process_init.connect
def _tune_gc(**_: Any) -> None:
    """In each pool process, once: what was imported is frozen out of the collector's scans and
    the youngest generation is collected every 50,000 allocations, not 700. A batch allocates a
    few hundred thousand short-lived objects (personalizations, rows, JSON); py-spy put a tenth
    of a worker's samples in collections triggered inside `build_message` (README Benchmarks).
    The same tuning as the web app's (digest/web/app.py)."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


# Every process with the Celery app (web, worker, beat) measures through Prometheus.
from workers import metrics as _metrics  # noqa: E402, F401
