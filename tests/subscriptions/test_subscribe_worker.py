"""Production shape: the web app under uvicorn queues emails in Redis; a real Celery worker sends.

Nothing runs in-process here: POST /subscribe answers before any email exists, the confirmation
appears in the outbox only when the worker has consumed the `digest.send_confirmation` message.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_lib

from bench.procs import Proc, celery_worker, free_port, port_open, wait_for
from tests.support.services import ADMIN_TOKEN, INGEST_TOKEN, SECRET_KEY
from tests.support.subscriber_fixtures import find, link, mails_to, path_of

ADDRESS = "queued.reader@example.com"


@pytest.fixture
def stack(pg: str, redis_url: str, outbox: Path, tmp_path: Path) -> Iterator[str]:
    """uvicorn (2 workers) and one Celery worker sharing PostgreSQL, Redis and the outbox."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "DIGEST_ENV": "production",
        "DIGEST_DATABASE_URL": pg,
        "DIGEST_BROKER_URL": redis_url,
        "DIGEST_REDIS_URL": redis_url,
        "DIGEST_EMAIL_BACKEND": "outbox",
        "DIGEST_OUTBOX_DIR": str(outbox),
        "DIGEST_SECRET_KEY": SECRET_KEY,
        "DIGEST_ADMIN_TOKEN": ADMIN_TOKEN,
        "DIGEST_INGEST_TOKEN": INGEST_TOKEN,
        "DIGEST_PUBLIC_URL": base,
    }
    web = Proc(
        "web",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "digest.web.app:app",
            "--host=127.0.0.1",
            f"--port={port}",
            "--workers=2",
            "--log-level=warning",
        ],
        env=env,
        log_dir=tmp_path,
    ).start()
    worker = celery_worker("subscribe", env, concurrency=2, pool="threads", log_dir=tmp_path)
    try:
        wait_for(lambda: port_open(port) or not web.alive, 60, what="uvicorn to listen")
        assert web.alive, web.log_tail()
        worker.start()
        wait_for(
            lambda: "ready." in worker.log_tail(200) or not worker.alive,
            60,
            what="the celery worker to be ready",
        )
        assert worker.alive, worker.log_tail()
        yield base
    finally:
        worker.stop(timeout=20)
        web.stop(timeout=20)
        redis_lib.Redis.from_url(redis_url).flushdb()


def wait_for_mail(outbox: Path, kind: str):
    found = wait_for(lambda: mails_to(outbox, ADDRESS, kind), 30, what=f"the {kind} email")
    return found[0]  # type: ignore[index]


def test_emails_are_queued_and_sent_by_a_real_worker(stack: str, outbox: Path) -> None:
    with httpx.Client(base_url=stack, timeout=10) as http:
        response = http.post("/subscribe", json={"email": ADDRESS, "name": "Queued Reader"})
        assert response.status_code == 202
        assert find(ADDRESS).status == "pending"

        confirmation = wait_for_mail(outbox, "confirmation")
        assert http.post(path_of(link(confirmation, "confirm"))).status_code == 200
        assert find(ADDRESS).status == "active"

        welcome = wait_for_mail(outbox, "welcome")
        one_click = welcome["List-Unsubscribe"].strip().strip("<>")
        response = http.post(
            path_of(one_click),
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200
        assert find(ADDRESS).status == "unsubscribed"
        assert wait_for_mail(outbox, "goodbye")
        assert len(mails_to(outbox, ADDRESS)) == 3


def test_broker_outage_gives_the_same_answer_and_releases_the_claim(
    pg: str, redis_url: str, outbox: Path, tmp_path: Path
) -> None:
    port, dead_broker = free_port(), f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    env = {
        "DIGEST_ENV": "test",
        "DIGEST_DATABASE_URL": pg,
        "DIGEST_BROKER_URL": dead_broker,
        "DIGEST_REDIS_URL": redis_url,
        "DIGEST_OUTBOX_DIR": str(outbox),
        "DIGEST_SECRET_KEY": SECRET_KEY,
    }
    argv = [sys.executable, "-m", "uvicorn", "digest.web.app:app", f"--port={port}"]
    web = Proc("web-no-broker", argv, env=env, log_dir=tmp_path).start()
    try:
        wait_for(lambda: port_open(port) or not web.alive, 60, what="uvicorn to listen")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            response = http.post("/subscribe", json={"email": ADDRESS})
        assert (response.status_code, response.json()) == (202, {"status": "pending"})
        row = find(ADDRESS)
        assert row.status == "pending"
        assert row.confirmation_sent_at is None  # released: the next signup will send
        assert "could not queue confirmations" in web.log_tail(200)
    finally:
        web.stop(timeout=20)


PUBLISH_SCRIPT = """
import sys
from workers import tasks
from workers.publish import enqueue, enqueue_ids
ids = [int(a) for a in sys.argv[1:]]
enqueue(tasks.send_confirmation.s(ids[0]), declare_once=True)  # Celery's own, declares
enqueue_ids(tasks.send_confirmation.name, ids[1:])  # then the batched path
"""


def publish_confirmations(broker_url: str, ids: list[int], pg: str) -> None:
    """Queue confirmations in a fresh process, as a web worker does: Celery first, then batched."""
    env = {**os.environ, "DIGEST_BROKER_URL": broker_url, "DIGEST_DATABASE_URL": pg}
    argv = [sys.executable, "-c", PUBLISH_SCRIPT, *map(str, ids)]
    subprocess.run(argv, env=env, check=True, timeout=60)


def test_batched_confirmation_messages_are_celerys_own_but_for_their_ids(
    pg: str, redis_url: str
) -> None:
    publish_confirmations(redis_url, [7, 8, 9], pg)
    raw = redis_lib.Redis.from_url(redis_url).lrange("celery", 0, -1)
    messages = [json.loads(m) for m in reversed(raw)]  # LPUSH: the oldest is last
    assert [m["headers"]["argsrepr"] for m in messages] == ["(7,)", "(8,)", "(9,)"]
    for message, subscriber_id in zip(messages, [7, 8, 9], strict=True):
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        assert (args, kwargs) == ([subscriber_id], {})
        assert message["headers"]["id"] == message["headers"]["root_id"]
        assert message["properties"]["correlation_id"] == message["headers"]["id"]
        assert uuid.UUID(message["headers"]["id"]).version == 4

    def without_ids(message: dict) -> dict:
        copy = json.loads(json.dumps(message))
        for key in ("id", "root_id", "argsrepr"):
            copy["headers"].pop(key)
        for key in ("correlation_id", "delivery_tag"):
            copy["properties"].pop(key)
        copy.pop("body")
        return copy

    celerys, *batched = messages
    assert all(without_ids(m) == without_ids(celerys) for m in batched)
    assert len({m["headers"]["id"] for m in messages}) == 3
    assert len({m["properties"]["delivery_tag"] for m in messages}) == 3


def test_batched_confirmations_are_sent_by_a_real_worker(
    stack: str, pg: str, redis_url: str, outbox: Path
) -> None:
    from digest.db import session_scope
    from digest.subscriptions import make_signup, subscribe

    addresses = [f"batched{i}@example.com" for i in range(4)]
    with session_scope() as session:
        ids = [
            subscribe(session, make_signup(email=a), source="test", ip_hash=None).subscriber_id
            for a in addresses
        ]
    publish_confirmations(redis_url, ids, pg)
    for address in addresses:
        wait_for(lambda a=address: mails_to(outbox, a, "confirmation"), 30, what=address)
