"""`digest send`: an ad hoc digest through the same pipeline, `--to`, `--dry-run` and `--wait`.

The first tests run the CLI in-process on the embedded default (tasks eager, outbox backend);
the last one is the real thing: `digest send --wait` in its own process, a real Celery worker
consuming from Redis, and the fake SendGrid server receiving the batches over loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from digest.cli import app
from digest.db import session_scope
from digest.ledger_counts import count_by_status
from schema.models import Delivery, DeliveryBatch, Digest
from tests.support.planning_worker import Launch
from tests.support.recipients import add_subscribers, count, publish
from tests.support.sendgrid_server import FakeSendGrid
from tests.support.services import read_outbox

NOW = datetime.now(UTC)
WEEK = [
    ("quillmate-vs-parsewell", "Writing"),
    ("palettebird-vs-vectorine", "Design"),
    ("latticeflow-vs-cobaltcode", "Developer Tools"),
]


@pytest.fixture
def week(pg: str) -> Iterator[None]:
    from workers.app import app as celery_app

    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # no broker in base_env: the embedded default
    with session_scope() as session:
        publish(session, WEEK, at=NOW - timedelta(hours=1))
    yield
    celery_app.conf.task_always_eager = eager


def send(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["send", *args])
    return result.exit_code, result.output


def test_send_mails_every_weekly_subscriber_once(week: None, outbox: Path) -> None:
    with session_scope() as session:
        emails = add_subscribers(session, 12)
    code, output = send()
    assert code == 0, output
    assert "12 recipient(s), 1 batch(es)" in output
    assert sorted(m["To"].addresses[0].addr_spec for m in read_outbox(outbox)) == emails


def test_dry_run_prints_the_plan_and_sends_nothing(week: None, outbox: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 1500)
        add_subscribers(session, 3, prefix="design", categories=["Design"])
    code, output = send("--dry-run")
    assert code == 0, output
    assert "Palettebird vs Vectorine" in output  # the items
    assert "1503 recipient(s), 3 batch(es), 2 render(s)" in output
    assert "dry run" in output
    assert read_outbox(outbox) == []
    with session_scope() as session:
        assert count(session, DeliveryBatch) == 0
        assert count(session, Delivery) == 0


def test_to_sends_one_test_copy_to_that_address_only(week: None, outbox: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 40)
    code, output = send("--to", "editor@example.net", "--subject", "Monday's draft")
    assert code == 0, output
    [message] = read_outbox(outbox)
    assert message["To"] == "editor@example.net"
    assert message["Subject"] == "[Test] Monday's draft"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_segment_sends_only_those_categories(week: None, outbox: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 2, prefix="all")
        add_subscribers(session, 2, prefix="writing", categories=["Writing"])
    code, output = send("--segment", "Design")
    assert code == 0, output
    messages = read_outbox(outbox)
    assert sorted(m["To"].addresses[0].addr_spec[:3] for m in messages) == ["all", "all"]
    assert "2 subscriber(s) get nothing: no item in Writing" in output


def test_a_window_without_comparisons_sends_nothing_and_says_so(week: None, outbox: Path) -> None:
    with session_scope() as session:
        add_subscribers(session, 5)
    code, output = send("--since", "2020-01-01", "--until", "2020-01-08")
    assert code == 0, output
    assert "no new comparisons" in output and "cancelled" in output
    assert read_outbox(outbox) == []


def test_bad_input_names_the_option(week: None) -> None:
    code, output = send("--since", "last week")
    assert code == 2 and "--since" in output
    code, output = send("--segment", "Gardening")
    assert code == 2 and "--segment" in output and "Gardening" in output
    with session_scope() as session:
        assert count(session, Digest) == 0


# --- the real thing: a worker, Redis and the fake SendGrid -------------------------------------


def test_send_wait_with_a_real_worker_reaches_every_recipient_once(
    launch: Launch, worker_env: dict[str, str], sendgrid_env: FakeSendGrid
) -> None:
    launch("worker", "send-command")
    with session_scope() as session:
        publish(session, WEEK, at=NOW - timedelta(hours=1))
        emails = add_subscribers(session, 4500)
        emails += add_subscribers(session, 500, prefix="designer", categories=["Design"])
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "digest.cli", "send", "--wait"],
        env={**os.environ, **worker_env, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5000 recipient(s), 6 batch(es), 2 render(s)" in result.stdout
    assert ": sent — 5000 delivered to SendGrid" in result.stdout
    assert sendgrid_env.counts == dict.fromkeys(emails, 1)
    assert sendgrid_env.accepted == 6
    with session_scope() as session:
        digest = session.scalars(select(Digest)).one()
        assert digest.status == "sent"
        assert count_by_status(session, Delivery, digest.id) == {"sent": 5000}
    print(f"\ndigest send --wait: 5000 recipients, 6 batches in {elapsed:.1f} s")
