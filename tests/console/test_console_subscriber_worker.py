"""Resend confirmation for real: the app under uvicorn queues `digest.send_confirmation` to Redis
after its commit, a Celery worker sends it through the SendGrid stand-in, and the link in it
confirms the subscriber (the public flow's task and link, started from the console)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from digest.db import session_scope
from schema.models import AuditEntry, Subscriber
from tests.support.console_fixtures import OperatorAccount, csrf_in, sign_in
from tests.support.planning_worker import Launch
from tests.support.sendgrid_server import FakeSendGrid
from tests.support.waiting import eventually

PENDING = "waiting.reader@example.com"


def confirmations_to(sendgrid: FakeSendGrid, address: str) -> list[dict[str, Any]]:
    return [
        body
        for body in sendgrid.received()
        if "confirmation" in body.get("categories", [])
        and any(to["email"] == address for p in body["personalizations"] for to in p["to"])
    ]


def test_resend_confirmation_queues_the_public_task_and_its_link_confirms(
    console_web: str, launch: Launch, sendgrid_env: FakeSendGrid, operator: OperatorAccount
) -> None:
    launch("worker", "resend-worker")
    with session_scope() as session:
        row = Subscriber(email=PENDING, name="Waiting Reader", status="pending")
        session.add(row)
        session.flush()
        subscriber_id = row.id
    with httpx.Client(base_url=console_web, timeout=30) as client:
        assert sign_in(client).status_code == 303
        page = client.get(f"/console/subscribers/{subscriber_id}")
        answer = client.post(
            f"/console/subscribers/{subscriber_id}/resend-confirmation",
            data={"csrf_token": csrf_in(page.text)},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"].endswith("notice=resent")
        (body,) = eventually(lambda: confirmations_to(sendgrid_env, PENDING), "the email")
        html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
        link = re.search(r'href="([^"]*/confirm/[^"]+)"', html).group(1)
        assert client.post(urlsplit(link).path).status_code == 200  # the button's POST
    with session_scope() as session:
        assert session.get(Subscriber, subscriber_id).status == "active"
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "subscriber.resent")
        ).one()
    assert entry.target == f"subscriber {subscriber_id}" and PENDING not in (entry.detail or "")
