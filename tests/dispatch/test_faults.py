"""Crashes and outages in the middle of a 20,000-recipient weekly digest: nothing lost or doubled.

Each test plans a real weekly digest (20,000 subscribers COPYed into PostgreSQL, the sample
comparisons, eight preference segments) and sends it through real processes: `celery -A workers
worker` subprocesses, a private redis-server of the test's own as the broker (never the shared
one on :6379, which one test kills), and the fake SendGrid on loopback. Then something breaks:
a worker is killed with SIGKILL mid-request, Redis is killed and restarted empty, PostgreSQL
drops every connection, SendGrid stalls past the client's timeout, answers 429 in bursts, 500.

The verdict comes from the fake server's own record of addresses: every active subscriber got
exactly one message, except recipients of batches the service reports as ambiguous (SendGrid
may or may not have taken them); those are listed by `digest status` with their count, and they
got at most one. Recovery runs the production paths: Redis redelivers a dead worker's tasks after
the visibility timeout (acks_late), the claim turns a redelivered task for a batch already in
`sending` into a no-op, the reaper (`digest.reap_stale_claims`) turns such a batch ambiguous,
and `digest.requeue_orphaned_batches` re-enqueues pending batches whose tasks Redis lost. A
clock thread here plays beat for those two tasks, every second instead of every minute.
Timings (visibility timeout, claim timeout, orphan age, retry delays) are settings, set short.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import func, select
from typer.testing import CliRunner

from bench.seed import copy_subscribers, import_sample_comparisons
from digest.cli import app as cli
from digest.db import session_scope
from digest.planning import plan_digest_id
from schema.models import Delivery, DeliveryBatch, Digest, Subscriber
from tests.support.fault_harness import (
    PrivateRedis,
    Proc,
    start_worker,
    terminate_backends,
    wait_for,
)
from tests.support.sendgrid_server import DEFAULT_KEY, FakeSendGrid
from tests.support.services import SECRET_KEY

pytestmark = pytest.mark.fault

RECIPIENTS = 20_000
SEGMENTS = 8
CLIENT_TIMEOUT = 2.0  # DIGEST_SENDGRID_TIMEOUT
CLAIM_TIMEOUT = 6.0  # DIGEST_SEND_CLAIM_TIMEOUT: a claim this old with no answer is ambiguous
VISIBILITY_TIMEOUT = 8.0  # DIGEST_VISIBILITY_TIMEOUT: a dead worker's tasks come back after this
ORPHAN_AFTER = 8.0  # DIGEST_SEND_ORPHAN_AFTER: a pending batch untouched this long is re-enqueued
FINISH_TIMEOUT = 120.0
HOUSEKEEPING = ("digest.reap_stale_claims", "digest.requeue_orphaned_batches")


@dataclass
class Rig:
    """One test's processes and the digest in flight."""

    database_url: str
    redis: PrivateRedis
    server: FakeSendGrid
    log_dir: Path
    env: dict[str, str]
    producer: Celery
    workers: list[Proc] = field(default_factory=list)
    digest_id: int = 0
    batch_ids: list[int] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2) -> Proc:
        name = f"fault-{len(self.workers) + 1}"
        worker = start_worker(name, self.env, self.log_dir, concurrency=concurrency)
        self.workers.append(worker)
        return worker

    def plan(self) -> None:
        """A weekly digest to every subscriber, planned by the planner, its batches enqueued."""
        with session_scope() as session:
            digest = Digest(
                kind="weekly", status="planned", window_end=datetime.now(UTC), options={}
            )
            session.add(digest)
            session.flush()
            self.digest_id = digest.id
        report = plan_digest_id(self.digest_id)
        assert report is not None and report.status == "sending", report
        assert report.recipients == RECIPIENTS
        self.batch_ids = report.batch_ids
        for batch_id in self.batch_ids:
            self.producer.send_task("digest.send_batch", args=[batch_id])

    def batches(self, status: str) -> set[int]:
        with session_scope() as session:
            return set(
                session.scalars(
                    select(DeliveryBatch.id).where(
                        DeliveryBatch.digest_id == self.digest_id, DeliveryBatch.status == status
                    )
                )
            )

    def finished_batches(self) -> int:
        with session_scope() as session:
            return session.scalar(
                select(func.count())
                .select_from(DeliveryBatch)
                .where(
                    DeliveryBatch.digest_id == self.digest_id,
                    DeliveryBatch.status.not_in(("pending", "sending")),
                )
            )

    def wait_until_finished(self) -> str:
        def finished() -> str | None:
            with session_scope() as session:
                status = session.get(Digest, self.digest_id).status
            return status if status not in ("planned", "sending") else None

        try:
            return str(wait_for(finished, FINISH_TIMEOUT, interval=0.25, what="the digest"))
        except TimeoutError:
            logs = "\n".join(f"--- {w.name}\n{w.log_tail(30)}" for w in self.workers)
            pytest.fail(f"digest {self.digest_id} did not finish: {self.describe()}\n{logs}")

    def describe(self) -> dict:
        result = CliRunner().invoke(cli, ["status", str(self.digest_id), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


class HousekeepingClock(threading.Thread):
    """Plays beat for the reaper and the orphan re-enqueuer: sends both tasks every second.

    A send that fails (Redis is down) is skipped, as a beat's would be.
    """

    def __init__(self, broker_url: str) -> None:
        super().__init__(name="housekeeping-clock", daemon=True)
        self.client = _producer(broker_url)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(1.0):
            for name in HOUSEKEEPING:
                # the broker may be down: the next tick tries again
                with contextlib.suppress(Exception):
                    self.client.send_task(name, retry=False)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)
        self.client.close()


def _producer(broker_url: str) -> Celery:
    client = Celery("fault-tests", broker=broker_url)
    client.conf.broker_transport_options = {"socket_timeout": 2, "socket_connect_timeout": 1}
    client.conf.broker_connection_timeout = 1
    return client


@pytest.fixture
def rig(pg: str, tmp_path: Path) -> Iterator[Rig]:
    copy_subscribers(pg, RECIPIENTS, segments=SEGMENTS)
    import_sample_comparisons()
    redis = PrivateRedis(tmp_path).start()
    server = FakeSendGrid(keep_bodies=False).start()
    env = {
        "DIGEST_ENV": "test",
        "DIGEST_DATABASE_URL": pg,
        "DIGEST_BROKER_URL": redis.url,
        "DIGEST_REDIS_URL": "",
        "DIGEST_EMAIL_BACKEND": "sendgrid",
        "DIGEST_SENDGRID_HOST": server.url,
        "SENDGRID_API_KEY": DEFAULT_KEY,
        "DIGEST_SENDGRID_TIMEOUT": str(CLIENT_TIMEOUT),
        "DIGEST_SEND_CLAIM_TIMEOUT": str(CLAIM_TIMEOUT),
        "DIGEST_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "DIGEST_SEND_ORPHAN_AFTER": str(ORPHAN_AFTER),
        "DIGEST_SEND_RETRY_BASE_DELAY": "0.3",
        "DIGEST_SEND_RETRY_MAX_DELAY": "2",
        "DIGEST_SEND_MAX_ATTEMPTS": "12",
        "DIGEST_SECRET_KEY": SECRET_KEY,
        "DIGEST_PUBLIC_URL": "http://testserver",
    }
    producer = _producer(redis.url)
    clock = HousekeepingClock(redis.url)
    rig = Rig(pg, redis, server, tmp_path, env, producer)
    clock.start()
    try:
        yield rig
    finally:
        clock.stop()
        for worker in rig.workers:
            worker.stop(timeout=10)
        producer.close()
        server.stop()
        redis.stop()


@dataclass
class Verdict:
    ambiguous_batches: set[int]
    ambiguous_recipients: set[str]
    ambiguous_received: int  # how many of those the server did record


def assert_each_subscriber_got_exactly_one(rig: Rig) -> Verdict:
    """The server's per-address record against the active subscribers, ambiguity accounted."""
    received: Counter[str] = rig.server.addresses()
    with session_scope() as session:
        active = set(
            session.scalars(
                select(func.lower(Subscriber.email)).where(Subscriber.status == "active")
            )
        )
        ambiguous = set(
            session.scalars(
                select(func.lower(Delivery.email))
                .join(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
                .where(Delivery.digest_id == rig.digest_id, DeliveryBatch.status == "ambiguous")
            )
        )
    assert len(active) == RECIPIENTS
    doubled = {address: n for address, n in received.items() if n > 1}
    assert not doubled, f"{len(doubled)} address(es) received twice or more: {list(doubled)[:5]}"
    unexpected = set(received) - active
    assert not unexpected, f"mail to addresses that are not active subscribers: {unexpected}"
    missing = active - set(received) - ambiguous
    assert not missing, f"{len(missing)} subscriber(s) got nothing, silently: {sorted(missing)[:5]}"

    report = rig.describe()
    listed = {entry["batch_id"] for entry in report["ambiguous"]}
    assert listed == rig.batches("ambiguous")
    assert sum(entry["recipients"] for entry in report["ambiguous"]) == len(ambiguous)
    if listed:
        assert f"{len(listed)} batch(es) ambiguous" in report["status_reason"]
    assert report["batches"]["pending"] == report["batches"]["sending"] == 0
    assert report["deliveries"]["sent"] + len(ambiguous) == RECIPIENTS
    return Verdict(listed, ambiguous, sum(1 for a in ambiguous if a in received))


def test_worker_killed_mid_batch_loses_nothing_and_reports_its_batch_ambiguous(rig: Rig) -> None:
    rig.server.delay_each(0.4)  # every request in flight for a while: the kill lands mid-request
    victim = rig.start_worker()
    rig.plan()
    wait_for(lambda: rig.finished_batches() >= 3 and rig.batches("sending"), 60, what="sending")

    victim.kill()  # SIGKILL to the worker and its pool: no acks, no cleanup
    time.sleep(1)  # a COMMIT the worker sent just before dying still lands
    in_flight = rig.batches("sending")  # claimed by the dead worker, answer never recorded
    assert in_flight, "the kill must land while a batch is in flight"
    rig.server.delay_each(0)
    rig.start_worker()  # picks up the dead worker's tasks after the visibility timeout

    assert rig.wait_until_finished() == "sent"
    verdict = assert_each_subscriber_got_exactly_one(rig)
    assert verdict.ambiguous_batches == in_flight
    assert rig.finished_batches() == len(rig.batch_ids)


def test_redis_restarted_empty_mid_dispatch_loses_nothing(rig: Rig) -> None:
    rig.server.delay_each(0.25)
    rig.start_worker()
    rig.plan()
    wait_for(lambda: rig.finished_batches() >= 3, 60, what="the first batches")

    rig.redis.restart()  # kill -9 and start again on the same port, with nothing in it
    assert rig.batches("pending"), "the restart must land while batches still wait"
    rig.server.delay_each(0)

    assert rig.wait_until_finished() == "sent"
    verdict = assert_each_subscriber_got_exactly_one(rig)
    # The lost tasks came back through the orphan re-enqueuer, not by luck: nothing was lost.
    assert rig.redis.starts == 2
    assert len(verdict.ambiguous_recipients) <= 2 * 1000  # at most the two requests in flight


def test_postgres_connections_terminated_mid_dispatch_loses_nothing(rig: Rig) -> None:
    rig.server.delay_each(0.25)
    rig.start_worker()
    rig.plan()
    wait_for(lambda: rig.finished_batches() >= 3, 60, what="the first batches")

    terminated = 0
    for _ in range(8):  # over two seconds: idle, mid-claim and mid-update connections alike
        terminated += terminate_backends(rig.database_url)
        time.sleep(0.25)
    assert terminated >= 1, "the workers' connections must be cut mid-dispatch"
    assert rig.batches("pending"), "the cut must land while batches still wait"
    rig.server.delay_each(0)

    assert rig.wait_until_finished() == "sent"
    assert_each_subscriber_got_exactly_one(rig)


def test_sendgrid_stalls_429_bursts_and_500s_lose_nothing_and_list_the_unknown(rig: Rig) -> None:
    rig.server.fail_next(429, 4, reset_in=1)  # a burst of rate limiting, with X-RateLimit-Reset
    rig.server.fail_next(500, 3)
    rig.server.stall_next(CLIENT_TIMEOUT + 2, 1, accept=True)  # took it, answered too late
    rig.server.stall_next(CLIENT_TIMEOUT + 2, 1, accept=False)  # never took it, no answer
    rig.start_worker()
    rig.plan()

    assert rig.wait_until_finished() == "sent"
    verdict = assert_each_subscriber_got_exactly_one(rig)
    statuses = rig.server.stats()["statuses"]
    assert statuses.get("429") == 4 and statuses.get("500", 0) >= 3
    # The two requests that timed out are ambiguous: one reached SendGrid, one did not.
    assert len(verdict.ambiguous_batches) == 2
    sizes = sorted(_batch_sizes(verdict.ambiguous_batches))
    assert verdict.ambiguous_received in {sizes[0], sizes[1]}


def _batch_sizes(batch_ids: set[int]) -> list[int]:
    with session_scope() as session:
        return list(
            session.scalars(select(DeliveryBatch.size).where(DeliveryBatch.id.in_(batch_ids)))
        )
