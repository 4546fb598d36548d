"""Readers' verdicts not reaching the site show on the dashboard: a failing site (a loopback
receiver answering 500 to every try) and a backlog (an event whose task was lost, waiting
longer than beat's sweeper should need) are each an item under "Needs a person"."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from digest.attention import site_webhook_attention
from digest.db import reset_caches, session_scope
from digest.site_events import WebhookHealth
from schema.models import SiteEvent, utcnow
from tests.support.figures import page_figures
from tests.support.votes import SLUGS, Receiver, html_links, link_for, send_week


def site(monkeypatch: pytest.MonkeyPatch, fail_first: int) -> Receiver:
    receiver = Receiver(fail_first=fail_first)
    monkeypatch.setenv("DIGEST_SITE_WEBHOOK_URL", receiver.start())
    monkeypatch.setenv("DIGEST_SITE_WEBHOOK_SECRET", "site-webhook-secret-for-console-tests")
    monkeypatch.setenv("DIGEST_SITE_WEBHOOK_RETRY_BASE_DELAY", "0.01")
    monkeypatch.setenv("DIGEST_SITE_WEBHOOK_MAX_ATTEMPTS", "2")
    reset_caches()
    return receiver


@pytest.fixture
def failing_site(signed_in: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    got = site(monkeypatch, fail_first=10**6)
    yield got
    got.stop()


@pytest.fixture
def healthy_site(signed_in: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    got = site(monkeypatch, fail_first=0)
    yield got
    got.stop()


def cast_one(client: TestClient, outbox: Path) -> None:
    week = send_week()
    vote = link_for(html_links(outbox, week.addresses[0]), SLUGS[0], 0, "ship")
    assert client.post(vote).status_code == 200


def attention_items(client: TestClient) -> list[str]:
    html = client.get("/console").text
    section = html.split('id="attention-h"', 1)[1].split("</section>", 1)[0]
    return [item.split("</li>", 1)[0] for item in section.split("<li>")[1:]]


def test_a_failing_site_webhook_appears_on_the_dashboard(
    signed_in: TestClient, failing_site: Receiver, outbox: Path
) -> None:
    cast_one(signed_in, outbox)
    assert failing_site.answered == [500, 500]  # the task gave up; the sweeper will try again
    [item] = attention_items(signed_in)
    assert "site-webhook" in item and "1 event(s) to the site failing" in item
    assert "HTTP 500" in item
    shown = page_figures(signed_in.get("/console").text)
    assert (shown.one("site_waiting"), shown.one("site_failing")) == (1, 1)


def test_a_delivered_verdict_needs_nobody(
    signed_in: TestClient, healthy_site: Receiver, outbox: Path
) -> None:
    cast_one(signed_in, outbox)
    assert healthy_site.answered == [204]
    assert attention_items(signed_in) == []
    assert page_figures(signed_in.get("/console").text).one("site_delivered") == 1


def test_an_event_waiting_past_the_sweeper_is_a_backlog_on_the_dashboard(
    signed_in: TestClient, healthy_site: Receiver, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("digest.web.votes._queue_event", lambda _id: None)  # the task is lost
    cast_one(signed_in, outbox)
    assert attention_items(signed_in) == []  # just written: the sweeper has time yet
    with session_scope() as session:
        session.execute(update(SiteEvent).values(created_at=utcnow() - timedelta(hours=2)))
    [item] = attention_items(signed_in)
    assert "1 event(s) waiting for the site, the oldest for 120 min" in item


def test_events_waiting_with_the_webhook_switched_off_need_a_person() -> None:
    waiting = WebhookHealth(False, 3, 2, 0, None, utcnow())
    [item] = site_webhook_attention(waiting, utcnow())
    assert item.digest_id is None and "DIGEST_SITE_WEBHOOK_URL is empty" in item.why
    assert site_webhook_attention(WebhookHealth(False, 0, 0, 0, None), utcnow()) == []
