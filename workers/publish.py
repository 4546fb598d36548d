"""The one way work is handed to the workers: publish task signatures after the commit.

Every entry point (web handlers, CLI commands, the demo, periodic tasks) writes its rows first,
commits, and then calls `enqueue(...)` here. A broker that cannot be reached fails fast (one
quick retry, a short connect timeout set in workers/app.py) with `BrokerUnavailable`, and the
caller decides what that means for its answer: the admin API answers 503, the CLI prints what
was and was not queued, the signup path releases its confirmation claims, the webhook keeps its
stored body for the sweeper. Every task queued here is safe to queue twice (each checks the
database before acting), which is what lets beat's sweepers re-queue work whose task was lost.

Without a broker (`DIGEST_BROKER_URL` empty) tasks run in-process, before `enqueue` returns.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis.exceptions
from celery.canvas import Signature
from kombu.exceptions import OperationalError as KombuOperationalError

from workers.app import app

log = logging.getLogger(__name__)

# One immediate retry (a dropped pooled connection reconnects), then give up: a request must
# not hang on a dead broker. Celery's default is three retries over about 0.6 s.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

# What a broker that cannot be reached raises through kombu's redis transport.
_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    KombuOperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class BrokerUnavailable(RuntimeError):
    """The task broker could not be reached: assume none of the call's tasks were queued.

    Whatever the caller committed before is still there; a retry, or one of beat's sweepers
    (planned digests, orphaned batches, unprocessed webhook bodies), queues it later.
    """

    def __init__(self, tasks: list[str], cause: BaseException) -> None:
        self.tasks = tasks
        shown = ", ".join(tasks[:5]) + (f" and {len(tasks) - 5} more" if len(tasks) > 5 else "")
        super().__init__(f"task broker unreachable ({cause}); not queued: {shown}")


# kombu re-checks the queue declaration on every publish (a retrying wrapper each time, a tenth
# of a signup's CPU). `declare_once` callers skip it after this process has declared it once.
_declared = {"queue": False}


def enqueue(*signatures: Signature, declare_once: bool = False) -> None:
    """Publish `signatures` after the caller's commit, in one broker round trip where it can.

    The messages share one producer and, on kombu >= 5.7, one pipelined write. Raises
    `BrokerUnavailable` if the broker cannot be reached; in-process (no broker), each task
    runs here and its own errors propagate as they are.

    `declare_once=True` skips kombu's per-message queue declaration once this process has
    declared the queue (the signup path's measured optimisation); other callers keep it, so a
    broker emptied since the last declaration never drops their message.
    """
    if not signatures:
        return
    if app.conf.task_always_eager:
        for signature in signatures:
            signature.apply_async()
        return
    options: dict[str, Any] = {"retry": True, "retry_policy": PUBLISH_RETRY_POLICY}
    if declare_once and _declared["queue"]:
        options["declare"] = []
    try:
        with app.producer_or_acquire() as producer:
            batch = getattr(producer, "batch", None)
            with batch() if batch else contextlib.nullcontext():
                for signature in signatures:
                    signature.apply_async(producer=producer, **options)
    except _BROKER_ERRORS as exc:
        names = [f"{s.task}{tuple(s.args)}" for s in signatures]
        raise BrokerUnavailable(names, exc) from exc
    if declare_once:
        _declared["queue"] = True
