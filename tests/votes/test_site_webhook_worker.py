"""At least once with real Celery workers: a worker killed mid-delivery loses no event."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest import tokens
from digest.db import reset_caches, session_scope
from schema.models import SiteEvent
from tests.support.planning_worker import Launch
from tests.support.subscriber_fixtures import find
from tests.support.votes import SLUGS, Receiver, send_week, verify

SECRET = "site-webhook-secret-for-worker-tests-012345"


def test_a_worker_killed_mid_delivery_loses_no_event(
    client: TestClient,
    launch: Launch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hold = threading.Event()
    receiver = Receiver(hold=hold)
    url = receiver.start()
    site = {
        "DIGEST_SITE_WEBHOOK_URL": url,
        "DIGEST_SITE_WEBHOOK_SECRET": SECRET,
        "DIGEST_SITE_WEBHOOK_REQUEUE_AFTER": "1",
        "DIGEST_SITE_WEBHOOK_TIMEOUT": "120",
    }
    for key, value in site.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    monkeypatch.setattr("digest.web.votes._queue_event", lambda _id: None)  # beat sends it
    week = send_week()  # to the fake SendGrid here: the reader's token is the one it carries
    reader = find(week.addresses[0])
    assert reader is not None
    token = tokens.reader_token(week.digest_id, reader.id)
    assert client.post(f"/vote/{token}/{SLUGS[0]}/0/ship").status_code == 200
    with session_scope() as session:
        [event_id] = session.scalars(select(SiteEvent.event_id)).all()

    first = launch("worker", "w1", **site)
    launch("beat", "beat", **site)
    deadline = time.monotonic() + 60
    while receiver.arrived == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert receiver.arrived >= 1, first.log_tail()  # the POST is in flight, held by the site
    first.kill()  # SIGKILL: no 2xx was seen, nothing was marked
    with session_scope() as session:
        assert session.scalar(select(SiteEvent.delivered_at)) is None
    hold.set()
    launch("worker", "w2", **site)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope() as session:
            if session.scalar(select(SiteEvent.delivered_at)) is not None:
                break
        time.sleep(0.5)
    with session_scope() as session:
        assert session.scalar(select(SiteEvent.delivered_at)) is not None
    assert receiver.received and {got.json()["id"] for got in receiver.received} == {event_id}
    assert all(verify(SECRET, got) for got in receiver.received)
    receiver.stop()
