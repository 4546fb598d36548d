"""Finding 10: nothing requested is ever stuck because the broker was down or lost a task.

Every entry point queues work through `workers.publish.enqueue` after its commit. A dead broker
fails fast with `BrokerUnavailable`: the admin API answers 503 with Retry-After and withdraws the
digest (so the retry a 503 invites sends it once, not twice), the CLI says what is pending. A
digest whose planning task was lost after a 202 is re-queued by beat's
`digest.requeue_planned_digests` once it is older than DIGEST_PLAN_REQUEUE_AFTER.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from bench.procs import Proc, free_port, port_open, wait_for
from digest.db import get_engine, session_scope
from schema.models import Digest
from tests.support.recipients import add_subscribers, publish
from tests.support.services import ADMIN_TOKEN, read_outbox

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NOW = datetime.now(UTC)
RECIPIENTS = 4


@pytest.fixture
def eager() -> Iterator[None]:
    """This process plays the part of a healthy broker + worker: tasks run in-process."""
    from workers.app import app as celery_app

    saved = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = saved


@pytest.fixture
def week(pg: str, eager: None) -> None:
    with session_scope() as session:
        publish(session, [("quillmate-vs-parsewell", "Writing")], at=NOW - timedelta(hours=1))
        add_subscribers(session, RECIPIENTS)


def start_web(tmp_path: Path, broker_url: str, name: str) -> tuple[Proc, str]:
    """uvicorn serving the app with this broker (the test's DIGEST_* settings otherwise)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "digest.web.app:app", f"--port={port}"]
    web = Proc(name, argv, env={"DIGEST_BROKER_URL": broker_url}, log_dir=tmp_path).start()
    wait_for(lambda: port_open(port) or not web.alive, 60, what="uvicorn to listen")
    assert web.alive, web.log_tail()
    return web, f"http://127.0.0.1:{port}"


def digest_row(digest_id: int) -> Digest:
    with session_scope() as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None
        session.expunge(digest)
        return digest


def backdate(digest_id: int, seconds: float) -> None:
    with session_scope() as session:
        session.execute(
            update(Digest)
            .where(Digest.id == digest_id)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


def recipients_mailed(outbox: Path) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in read_outbox(outbox))


def test_admin_post_with_a_dead_broker_answers_503_with_retry_after_and_leaves_nothing_stuck(
    week: None, outbox: Path, tmp_path: Path
) -> None:
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    web, base = start_web(tmp_path, dead_broker, "web-dead-broker")
    try:
        started = time.monotonic()
        with httpx.Client(base_url=base, timeout=30) as http:
            response = http.post("/admin/digests", json={}, headers=AUTH)
        elapsed = time.monotonic() - started
    finally:
        web.stop(timeout=20)
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert elapsed < 5, f"a dead broker must fail fast, took {elapsed:.1f}s"
    withdrawn = digest_row(response.json()["id"])
    # Not `planned` forever: withdrawn with the reason, so the retry the 503 invites is the one
    # that sends (a kept digest plus the retry would mail everyone twice).
    assert withdrawn.status == "cancelled"
    assert "broker" in (withdrawn.status_reason or "")
    assert read_outbox(outbox) == []

    # The broker is back (this process: tasks run in-process); the client retries once.
    with TestClient(_app()) as client:
        retry = client.post("/admin/digests", json={}, headers=AUTH)
    assert retry.status_code == 202, retry.text
    assert retry.json()["status"] == "sent"
    mailed = recipients_mailed(outbox)
    assert len(mailed) == RECIPIENTS and len(set(mailed)) == RECIPIENTS  # each once
    with session_scope() as session:
        assert session.scalars(select(Digest.status).order_by(Digest.id)).all() == [
            "cancelled",
            "sent",
        ]


def _app():  # type: ignore[no-untyped-def]
    from digest.web.app import create_app

    return create_app()


def test_a_digest_whose_planning_task_was_lost_is_requeued_by_beat_and_sent(
    week: None, redis_url: str, outbox: Path, tmp_path: Path
) -> None:
    """202 with a live broker, then the broker restarts empty: the sweeper sends it anyway."""
    from workers.tasks import requeue_planned_digests

    web, base = start_web(tmp_path, redis_url, "web-live-broker")
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            response = http.post("/admin/digests", json={}, headers=AUTH)
    finally:
        web.stop(timeout=20)
    assert response.status_code == 202, response.text
    digest_id = response.json()["id"]
    broker = redis_lib.Redis.from_url(redis_url)
    assert broker.llen("celery") == 1  # its planning task was queued ...
    broker.flushdb()  # ... and lost: Redis restarted without its data, no worker took it
    assert digest_row(digest_id).status == "planned"

    assert requeue_planned_digests() == []  # younger than DIGEST_PLAN_REQUEUE_AFTER: left alone
    backdate(digest_id, 91)
    assert requeue_planned_digests() == [digest_id]  # beat's tick: re-queued, planned, sent

    assert digest_row(digest_id).status == "sent"
    mailed = recipients_mailed(outbox)
    assert len(mailed) == RECIPIENTS and len(set(mailed)) == RECIPIENTS


def _planned(session_age: float) -> int:
    from digest.planning import request_digest

    with session_scope() as session:
        digest_id = request_digest(session).id
    backdate(digest_id, session_age)
    return digest_id


def test_the_sweep_picks_old_planned_digests_and_leaves_fresh_ones(pg: str) -> None:
    from digest.operations import requeue_planned_digests

    old, fresh = _planned(600), _planned(5)
    with session_scope() as session:
        assert requeue_planned_digests(session, 90) == [old]
    # stamped: the next tick does not queue it again while its task waits for a worker
    with session_scope() as session:
        assert requeue_planned_digests(session, 90) == []
    later = datetime.now(UTC) + timedelta(seconds=120)
    with session_scope() as session:
        assert requeue_planned_digests(session, 90, now=later) == [old, fresh]


def test_the_sweep_skips_a_digest_a_live_planner_holds(pg: str) -> None:
    from digest.operations import requeue_planned_digests

    held, free = _planned(600), _planned(600)
    with get_engine().connect() as planner:  # a planning transaction holding the row lock
        planner.execute(text("SELECT id FROM digests WHERE id = :id FOR UPDATE"), {"id": held})
        with session_scope() as session:
            assert requeue_planned_digests(session, 90) == [free]
        planner.rollback()


def test_queueing_the_planning_task_twice_sends_once(week: None, outbox: Path) -> None:
    from workers.tasks import plan_digest

    digest_id = _planned(0)
    assert plan_digest(digest_id) == "sending"
    assert digest_row(digest_id).status == "sent"
    assert plan_digest(digest_id) == "already planned"
    assert len(recipients_mailed(outbox)) == RECIPIENTS


def test_beat_requeues_a_lost_planning_task_within_two_minutes(pg: str) -> None:
    from digest.settings import get_settings
    from workers.app import make_app

    entry = make_app().conf.beat_schedule["digest.requeue_planned_digests"]
    assert entry["task"] == "digest.requeue_planned_digests"
    assert get_settings().plan_requeue_after + entry["schedule"] <= 120


def test_send_command_with_a_dead_broker_says_what_is_pending_and_exits_1(
    pg: str, tmp_path: Path
) -> None:
    with session_scope() as session:
        publish(session, [("quillmate-vs-parsewell", "Writing")], at=NOW - timedelta(hours=1))
        add_subscribers(session, RECIPIENTS)
    digest_cli = str(Path(sys.executable).with_name("digest"))
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = subprocess.run(
        [digest_cli, "send"],
        env={**os.environ, "DIGEST_BROKER_URL": dead_broker},
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "task broker unreachable" in message
    assert "batch(es) are pending but not queued" in message
    assert "DIGEST_SEND_ORPHAN_AFTER" in message
    assert elapsed < 60
    with session_scope() as session:
        assert session.scalars(select(Digest.status)).all() == ["sending"]  # planned, waiting
