"""Batches sent by a real Celery worker: exactly once, through retries, duplicates and a cancel.

A `celery -A workers worker` subprocess (threads pool, 4 at a time) consumes from this session's
Redis database and talks to the fake SendGrid over loopback; the test enqueues `digest.send_batch`
by name, as the planner does, and judges by the fake server's own record and the ledger.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from celery import Celery
from sqlalchemy import func, select

from bench.procs import Proc, celery_worker, wait_for
from digest import operations
from digest.db import session_scope
from digest.ledger_counts import count_by_status
from schema.models import Delivery, DeliveryBatch, Digest
from tests.support.planned_rows import PlannedDigest, plan_rows
from tests.support.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from tests.support.services import SECRET_KEY


@pytest.fixture(scope="module")
def worker(
    pg_url: str, redis_db: str, _module_sendgrid: FakeSendGrid, tmp_path_factory
) -> Iterator[Proc]:
    """One real worker for the module, configured like production but with short delays."""
    env = {
        "DIGEST_ENV": "test",
        "DIGEST_DATABASE_URL": pg_url,
        "DIGEST_BROKER_URL": redis_db,
        "DIGEST_REDIS_URL": "",
        "DIGEST_EMAIL_BACKEND": "sendgrid",
        "DIGEST_SENDGRID_HOST": _module_sendgrid.url,
        "SENDGRID_API_KEY": DEFAULT_KEY,
        "DIGEST_SENDGRID_TIMEOUT": "10",
        "DIGEST_SEND_RETRY_BASE_DELAY": "0.2",
        "DIGEST_SEND_RETRY_MAX_DELAY": "3",
        "DIGEST_SECRET_KEY": SECRET_KEY,
        "DIGEST_PUBLIC_URL": "http://testserver",
    }
    log_dir = tmp_path_factory.mktemp("worker")
    process = celery_worker(
        "dispatch", env, concurrency=4, pool="threads", log_dir=log_dir, extra=["-Q", "celery"]
    ).start()
    try:
        wait_for(
            lambda: "ready." in process.log_tail(200) or not process.alive,
            60,
            what="the celery worker to be ready",
        )
        assert process.alive, f"the worker died on start:\n{process.log_tail()}"
        yield process
    finally:
        process.stop(timeout=20)
        redis_lib.Redis.from_url(redis_db).flushdb()  # nothing left queued for later tests


@pytest.fixture(scope="module")
def producer(redis_db: str) -> Iterator[Celery]:
    """A client of the broker only, like the planner's side: it enqueues tasks by name."""
    client = Celery("dispatch-tests", broker=redis_db)
    yield client
    client.close()


@pytest.fixture
def enqueue(
    worker: Proc, producer: Celery, sendgrid_env: FakeSendGrid
) -> Callable[[list[int]], None]:
    def send(batch_ids: list[int]) -> None:
        for batch_id in batch_ids:
            producer.send_task("digest.send_batch", args=[batch_id])

    return send


def plan(recipients: int, **kwargs: object) -> PlannedDigest:
    with session_scope() as session:
        return plan_rows(session, recipients, **kwargs)


def digest_status(digest_id: int) -> str:
    with session_scope() as session:
        return session.get(Digest, digest_id).status


def wait_until_finished(digest_id: int, timeout: float = 60) -> str:
    wait_for(
        lambda: digest_status(digest_id) not in ("planned", "sending"),
        timeout,
        interval=0.1,
        what=f"digest {digest_id} to finish",
    )
    return digest_status(digest_id)


def batch_statuses(digest_id: int) -> Counter[str]:
    with session_scope() as session:
        return Counter(
            session.scalars(
                select(DeliveryBatch.status).where(DeliveryBatch.digest_id == digest_id)
            )
        )


def test_5000_subscribers_each_receive_exactly_one_message(
    enqueue: Callable[[list[int]], None], sendgrid_env: FakeSendGrid
) -> None:
    planned = plan(5000)
    assert len(planned.batch_ids) == 5
    enqueue(planned.batch_ids)
    assert wait_until_finished(planned.digest_id) == "sent"
    assert sendgrid_env.addresses() == Counter(planned.emails)
    stats = sendgrid_env.stats()
    assert (stats["requests"], stats["recipients"], stats["duplicates"]) == (5, 5000, 0)
    with session_scope() as session:
        sent = count_by_status(session, Delivery, planned.digest_id)["sent"]
        message_ids = set(session.scalars(select(DeliveryBatch.message_id)))
    assert sent == 5000
    assert message_ids == {body["_message_id"] for body in sendgrid_env.received()}


def test_retries_after_429_and_500_still_send_exactly_once(
    enqueue: Callable[[list[int]], None], sendgrid_env: FakeSendGrid
) -> None:
    planned = plan(3000)
    sendgrid_env.fail_next(429, count=2, reset_in=1)
    sendgrid_env.fail_next(500, count=2)
    enqueue(planned.batch_ids)
    assert wait_until_finished(planned.digest_id) == "sent"
    assert sendgrid_env.addresses() == Counter(planned.emails)
    assert sendgrid_env.stats()["statuses"] == {"202": 3, "429": 2, "500": 2}
    with session_scope() as session:
        attempts = session.scalar(select(func.sum(DeliveryBatch.attempts)))
    assert attempts == 7  # every refused request was a claim released and taken again


def test_duplicated_send_batch_tasks_send_nothing_twice(
    enqueue: Callable[[list[int]], None], sendgrid_env: FakeSendGrid
) -> None:
    planned = plan(4000)
    sendgrid_env.delay_each(0.2)  # keep claims in flight while the copies arrive
    enqueue(planned.batch_ids + planned.batch_ids + planned.batch_ids[::-1])
    assert wait_until_finished(planned.digest_id) == "sent"
    assert sendgrid_env.addresses() == Counter(planned.emails)
    assert sendgrid_env.stats()["requests"] == 4
    with session_scope() as session:
        assert set(session.scalars(select(DeliveryBatch.attempts))) == {1}


def test_cancel_mid_send_stops_the_remaining_batches(
    enqueue: Callable[[list[int]], None], sendgrid_env: FakeSendGrid
) -> None:
    planned = plan(1200, batch_size=40)  # 30 batches
    sendgrid_env.delay_each(0.5)  # 4 threads: about 8 requests a second, 4 s for all
    enqueue(planned.batch_ids)
    wait_for(lambda: batch_statuses(planned.digest_id)["sent"] >= 1, 30, what="a first batch")
    with session_scope() as session:
        cancelled = operations.cancel_digest(session, planned.digest_id)
    stopped_at = time.monotonic()
    assert cancelled["batches_cancelled"] >= 5
    wait_for(
        lambda: (
            batch_statuses(planned.digest_id)["sending"] == 0
            and batch_statuses(planned.digest_id)["pending"] == 0
        ),
        30,
        what="requests in flight to finish",
    )
    assert time.monotonic() - stopped_at < 5  # only requests already in flight finished
    requests = sendgrid_env.stats()["requests"]
    time.sleep(1.5)  # the cancelled batches' tasks all ran by now and sent nothing
    assert sendgrid_env.stats()["requests"] == requests
    statuses = batch_statuses(planned.digest_id)
    assert set(statuses) <= {"sent", "cancelled"}
    assert statuses["sent"] == requests
    assert statuses["cancelled"] == cancelled["batches_cancelled"]
    assert digest_status(planned.digest_id) == "cancelled"
    assert sum(sendgrid_env.addresses().values()) == 40 * statuses["sent"]


def test_worker_log_shows_no_task_errors(worker: Proc) -> None:
    assert "Traceback" not in Path(worker.log_path).read_text(errors="replace")
