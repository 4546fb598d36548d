"""Helpers shared by the subscription tests: the app client, the outbox's links, row lookups."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from digest.db import reset_caches, session_scope
from schema.models import Subscriber, Suppression
from tests.support.services import read_outbox

TOKEN_CHARS = r"[A-Za-z0-9_\-.]+"


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Run Celery tasks in-process (the embedded default), whatever another test configured."""
    from workers.app import app as celery_app

    keys = ("task_always_eager", "task_eager_propagates")
    saved = {key: celery_app.conf[key] for key in keys}
    celery_app.conf.update(dict.fromkeys(keys, True))
    yield
    celery_app.conf.update(saved)


@pytest.fixture
def client(pg: str, redis_url: str, eager_tasks: None) -> Iterator[TestClient]:
    """The app on PostgreSQL, with rate limits in Redis and emails in the outbox."""
    from digest.web.app import create_app

    with TestClient(create_app(), follow_redirects=False) as test_client:
        yield test_client


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def kind_of(message: EmailMessage) -> str:
    """confirmation | welcome | goodbye: digest/transactional.py tags each message's custom args."""
    return json.loads(message["X-Digest-Args"] or "{}").get("kind", "")


def mails_to(outbox: Path, address: str, kind: str | None = None) -> list[EmailMessage]:
    """Messages to `address` (of one kind, if given). The outbox's file order is not send order."""
    return [
        m
        for m in read_outbox(outbox)
        if address.lower() in str(m["To"]).lower() and kind in (None, kind_of(m))
    ]


def mail(outbox: Path, address: str, kind: str) -> EmailMessage:
    """The one message of `kind` to `address`."""
    found = mails_to(outbox, address, kind)
    assert len(found) == 1, f"{len(found)} {kind} messages to {address}"
    return found[0]


def link(message: EmailMessage, kind: str) -> str:
    """The first `/<kind>/<token>` link in the plain-text part."""
    match = re.search(rf"https?://[^\s/]+/{kind}/{TOKEN_CHARS}", body_text(message))
    assert match, f"no /{kind}/ link in:\n{body_text(message)}"
    return match.group(0)


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def find(address: str) -> Subscriber | None:
    with session_scope() as session:
        return session.scalar(
            select(Subscriber).where(func.lower(Subscriber.email) == address.lower())
        )


def count_subscribers() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


def count_suppressions() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Suppression)) or 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served_app(
    pg: str, redis_url: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, FastAPI]]:
    """The app under uvicorn on a free loopback port (in a thread); email links point at it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DIGEST_PUBLIC_URL", base)
    reset_caches()
    from digest.web.app import create_app

    app = create_app()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield base, app
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def server(served_app: tuple[str, FastAPI]) -> str:
    """The base URL of the served app."""
    return served_app[0]
