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

import base64
import contextlib
import json
import logging
import os
from functools import lru_cache
from typing import Any

import redis
import redis.exceptions
from celery.canvas import Signature
from kombu.exceptions import OperationalError as KombuOperationalError

from workers.app import BROKER_CONNECT_TIMEOUT, app

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


# --- one task per id, at the cost of a string join ------------------------------------------
#
# Celery's apply_async costs ~60 µs a message in Python (options merged, headers built, a
# routing lookup, kombu's producer and channel layers): at 4,000 signups/s that was a third of
# the web process's CPU. `enqueue_ids` writes the very same protocol-2 message (Celery builds
# the template, tests/service/test_task_messages.py compares it with Celery's own output) and
# LPUSHes a batch in one round trip.

_SLOTS = ("@@ID@@", "@@ARGSREPR@@", "@@BODY@@", "@@TAG@@")


@lru_cache(maxsize=8)
def _message_template(task_name: str) -> tuple[str, list[str], str, str]:
    """(queue, the message's JSON split at the slots, body prefix, body suffix) for a task with
    one integer argument, built once by Celery's own protocol-2 builder."""
    queue = app.conf.task_default_routing_key or app.conf.task_default_queue
    message = app.amqp.as_task_v2(
        _SLOTS[0], task_name, args=(0,), argsrepr=_SLOTS[1], ignore_result=True
    )
    properties = {
        **message.properties,
        "reply_to": app.thread_oid,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": _SLOTS[3],
    }
    envelope = {
        "body": _SLOTS[2],
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message.headers,
        "properties": properties,
    }
    text = json.dumps(envelope)
    for slot in _SLOTS:  # each slot becomes a separator: parts alternate text and slot
        text = text.replace(f'"{slot}"', f'"\x00{slot}\x00"')
    parts = text.split("\x00")
    prefix, _, suffix = json.dumps(message.body).partition("0")  # [[0], {}, {...}]
    return queue, parts, prefix, suffix


def random_uuids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs from one read of the OS's randomness: uuid.uuid4()
    reads it once per UUID, a system call that cost 7 µs each here."""
    raw = bytearray(os.urandom(16 * count))
    uuids = []
    for start in range(0, len(raw), 16):
        raw[start + 6] = (raw[start + 6] & 0x0F) | 0x40  # version 4
        raw[start + 8] = (raw[start + 8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw[start : start + 16].hex()
        uuids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return uuids


def task_message(task_name: str, argument: int, task_id: str, tag: str) -> str:
    """The JSON text of one `task_name(argument)` message, as kombu's Redis transport stores it."""
    _queue, parts, prefix, suffix = _message_template(task_name)
    values = {
        _SLOTS[0]: task_id,
        _SLOTS[1]: f"({argument},)",
        _SLOTS[2]: base64.b64encode(f"{prefix}{argument}{suffix}".encode()).decode(),
        _SLOTS[3]: tag,
    }
    return "".join(values.get(part, part) for part in parts)


@lru_cache(maxsize=2)
def _broker_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=BROKER_CONNECT_TIMEOUT, socket_timeout=10, retry=None
    )


def enqueue_ids(task_name: str, arguments: list[int]) -> None:
    """One `task_name(argument)` task per argument, pushed in one round trip (Redis broker).

    Like `enqueue(..., declare_once=True)`: the first call of a process goes through Celery
    (which declares the queue); in-process or on another broker transport it always does.
    Raises `BrokerUnavailable` after one immediate retry, as `enqueue` does.
    """
    if not arguments:
        return
    url = app.conf.broker_url or ""
    if app.conf.task_always_eager or not _declared["queue"] or not url.startswith("redis"):
        enqueue(*(app.signature(task_name, (a,)) for a in arguments), declare_once=True)
        return
    queue = _message_template(task_name)[0]
    ids = random_uuids(2 * len(arguments))
    messages = [
        task_message(task_name, argument, ids[2 * n], ids[2 * n + 1])
        for n, argument in enumerate(arguments)
    ]
    for attempt in (1, 2):
        try:
            _broker_client(url).lpush(queue, *messages)
            return
        except _BROKER_ERRORS as exc:
            if attempt == 2:
                raise BrokerUnavailable([f"{task_name}({a},)" for a in arguments], exc) from exc
