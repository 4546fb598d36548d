"""`reader_vote.cast` events to the site: signed, verifiable, at least once, off without a URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from digest import site_events
from digest.db import reset_caches, session_scope
from digest.event_schemas import SCHEMA_DIR
from schema.models import SiteEvent
from tests.support.votes import (
    SLUGS,
    Receiver,
    count_site_events,
    html_links,
    link_for,
    send_week,
    verify,
)
from workers import tasks

SECRET = "site-webhook-secret-for-tests-0123456789"


def site(monkeypatch: pytest.MonkeyPatch, fail_first: int = 0) -> Receiver:
    receiver = Receiver(fail_first=fail_first)
    monkeypatch.setenv("DIGEST_SITE_WEBHOOK_URL", receiver.start())
    monkeypatch.setenv("DIGEST_SITE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("DIGEST_SITE_WEBHOOK_RETRY_BASE_DELAY", "0.01")
    reset_caches()
    return receiver


@pytest.fixture
def receiver(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    got = site(monkeypatch)
    yield got
    got.stop()


@pytest.fixture
def failing_receiver(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    got = site(monkeypatch, fail_first=3)
    yield got
    got.stop()


def delivered() -> list[bool]:
    with session_scope() as session:
        return [at is not None for at in session.scalars(select(SiteEvent.delivered_at))]


def test_each_new_or_changed_verdict_reaches_the_site_signed(
    client: TestClient, receiver: Receiver, outbox: Path
) -> None:
    week = send_week()
    links = html_links(outbox, week.addresses[0])
    client.post(link_for(links, SLUGS[0], 0, "ship"))
    client.post(link_for(links, SLUGS[0], 0, "ship"))  # a repeat: no new event
    client.post(link_for(links, SLUGS[0], 0, "skip"))
    assert len(receiver.received) == 2
    assert all(verify(SECRET, got) for got in receiver.received)
    first, second = (got.json() for got in receiver.received)
    assert first["type"] == "reader_vote.cast" and first["id"] != second["id"]
    schema = json.loads((SCHEMA_DIR / "reader_vote.cast.schema.json").read_text())
    for event in (first, second):
        jsonschema.validate(event, schema)
    assert first["data"] | {"reader": None} == {
        "slug": SLUGS[0],
        "tool": "Alpha0",
        "tool_position": 0,
        "choice": "ship",
        "previous": None,
        "reader": None,
    }
    assert second["data"]["previous"] == "ship" and second["data"]["choice"] == "skip"
    assert first["data"]["reader"] == second["data"]["reader"]
    assert week.addresses[0] not in receiver.received[0].body.decode()
    assert receiver.received[0].headers["X-Verdicts-Event-Id"] == first["id"]
    assert delivered() == [True, True]


def test_a_site_answering_500_three_times_still_gets_the_event(
    client: TestClient, failing_receiver: Receiver, outbox: Path
) -> None:
    week = send_week()
    client.post(link_for(html_links(outbox, week.addresses[0]), SLUGS[1], 1, "skip"))
    assert failing_receiver.answered == [500, 500, 500, 204]
    assert all(verify(SECRET, got) for got in failing_receiver.received)
    assert len({got.json()["id"] for got in failing_receiver.received}) == 1
    assert delivered() == [True]


def test_a_forged_signature_does_not_verify(
    client: TestClient, receiver: Receiver, outbox: Path
) -> None:
    week = send_week()
    client.post(link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship"))
    [got] = receiver.received
    got.body = got.body.replace(b'"ship"', b'"skip"')
    assert not verify(SECRET, got)


def test_an_event_whose_task_was_lost_is_sent_by_the_sweeper(
    client: TestClient, receiver: Receiver, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed before the 2xx leaves the row undelivered; beat's sweeper sends it."""
    monkeypatch.setattr("digest.web.votes._queue_event", lambda _id: None)  # the task is lost
    monkeypatch.setenv("DIGEST_SITE_WEBHOOK_REQUEUE_AFTER", "0.001")
    reset_caches()
    week = send_week()
    client.post(link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 1, "ship"))
    assert receiver.received == [] and delivered() == [False]
    assert len(tasks.requeue_site_events()) == 1
    assert len(receiver.received) == 1 and verify(SECRET, receiver.received[0])
    assert delivered() == [True]
    assert tasks.requeue_site_events() == []  # delivered: never again


def test_status_shows_failing_deliveries(
    client: TestClient, receiver: Receiver, outbox: Path
) -> None:
    week = send_week()
    client.post(link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship"))
    with session_scope() as session:
        session.execute(
            update(SiteEvent).values(delivered_at=None, attempts=8, last_error="HTTP 503")
        )
        health = site_events.health(session)
    assert (health.enabled, health.waiting, health.failing, health.last_error) == (
        True,
        1,
        1,
        "HTTP 503",
    )


def test_no_events_without_a_site_url(client: TestClient, outbox: Path) -> None:
    week = send_week()
    assert (
        client.post(
            link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship")
        ).status_code
        == 200
    )
    assert count_site_events() == 0


def test_digest_status_prints_failing_deliveries(
    client: TestClient, receiver: Receiver, outbox: Path
) -> None:
    from typer.testing import CliRunner

    from digest.cli import app as cli

    week = send_week()
    client.post(link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship"))
    with session_scope() as session:
        session.execute(
            update(SiteEvent).values(delivered_at=None, attempts=8, last_error="HTTP 503")
        )
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "site webhook: 0 delivered, 1 waiting, 1 failing (last error: HTTP 503)" in result.output
