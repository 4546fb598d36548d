"""`GET /metrics`: off (404) without DIGEST_METRICS_TOKEN, 401 without or with a wrong bearer
token, and with it Prometheus text that counts what the test did — across two uvicorn worker
processes and a Celery worker sharing one PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from celery import Celery
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from digest.db import reset_caches, session_scope
from schema.models import Delivery, Digest, Subscriber, utcnow
from tests.support.live_app import ServeApp
from tests.support.paths import REPO
from tests.support.planning_worker import Launch
from tests.support.recipients import add_subscribers, publish
from tests.support.sendgrid_server import FakeSendGrid
from tests.support.services import ADMIN_TOKEN
from tests.support.signed_webhooks import ENDPOINT, Signer, body_of, sg_event
from tests.support.waiting import eventually

TOKEN = "metrics-token-0123456789-abcdefghijklmnop"
WEEK = [("quillmate-vs-parsewell", "Writing"), ("palettebird-vs-vectorine", "Design")]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def app_client(pg: str, redis_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def make(token: str = "") -> TestClient:
        monkeypatch.setenv("DIGEST_METRICS_TOKEN", token)
        reset_caches()
        from digest.web.app import create_app

        return TestClient(create_app())

    return make


def test_metrics_is_404_unless_a_token_is_set(app_client: Callable[..., TestClient]) -> None:
    client = app_client("")
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer"])
def test_metrics_without_the_token_or_with_a_wrong_one_is_401(
    app_client: Callable[..., TestClient], header: str | None
) -> None:
    client = app_client(TOKEN)
    answer = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "digest_" not in answer.text


def test_metrics_with_the_token_is_prometheus_text_with_the_queue_depth(
    app_client: Callable[..., TestClient], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_BROKER_URL", redis_url)
    client = app_client(TOKEN)
    import redis

    redis.Redis.from_url(redis_url).rpush("celery", b"{}", b"{}")
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert value(found, "digest_queue_depth", queue="celery") == 2
    assert ("digest_signups_total", ()) in found


def test_the_grafana_dashboard_queries_only_metrics_we_export(
    app_client: Callable[..., TestClient],
) -> None:
    exported = {
        family.name
        for family in text_string_to_metric_families(
            app_client(TOKEN).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        )
    }
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queried = {
        re.sub(r"_(bucket|total|count|sum)$", "", name)
        for expr in exprs
        for name in re.findall(r"digest_[a-z_]+", expr)
    }
    assert len(queried) == 11  # every metric of README "Metrics" has a panel
    assert queried <= exported, queried - exported


def test_a_weak_metrics_token_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.settings import ConfigurationError, Settings

    monkeypatch.setenv("DIGEST_ENV", "production")
    monkeypatch.setenv("DIGEST_METRICS_TOKEN", "change-me")
    with pytest.raises(ConfigurationError, match="DIGEST_METRICS_TOKEN"):
        Settings()


# --- for real: two uvicorn workers, a Celery worker, one metrics directory ---------------------


def scrape(base: str) -> dict:
    answer = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


def confirm_link(fake: FakeSendGrid, address: str) -> str:
    for body in fake.received():
        if any(to["email"] == address for p in body["personalizations"] for to in p["to"]):
            html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
            if found := re.search(r"/confirm/([A-Za-z0-9_.\-]+)", html):
                return found.group(0)
    return ""


def sign_up_and_confirm(base: str, fake: FakeSendGrid, addresses: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        for address in addresses:  # spread over both uvicorn workers by the kernel
            answer = http.post("/subscribe", json={"email": address, "frequency": "weekly"})
            assert answer.status_code == 202, answer.text
        link = eventually(lambda: confirm_link(fake, addresses[0]), "a confirmation email")
        assert http.post(link).status_code == 200
    eventually(lambda: len(fake.received()) >= len(addresses) + 1, "confirmations and welcome")


def send_a_digest(base: str) -> int:
    answer = httpx.post(
        f"{base}/admin/digests", json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert answer.status_code == 202, answer.text
    digest_id = answer.json()["id"]

    def finished() -> bool:
        with session_scope() as session:
            return session.get(Digest, digest_id).status == "sent"  # type: ignore[union-attr]

    eventually(finished, "the digest to be sent")
    return digest_id


def post_webhook(base: str, signer: Signer, digest_id: int) -> int:
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.id, Subscriber.email)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.digest_id == digest_id)
        ).all()
    now = int(time.time())
    events = [sg_event("delivered", e, timestamp=now, delivery_id=d) for d, e in rows]
    events.append(sg_event("open", rows[0][1], timestamp=now, delivery_id=rows[0][0]))
    body = body_of(events)
    answer = httpx.post(f"{base}{ENDPOINT}", content=body, headers=signer.headers(body))
    assert answer.status_code == 204, answer.text
    return len(rows)


def test_metrics_count_what_web_and_worker_processes_did(
    serve_app: ServeApp,
    launch: Launch,
    sendgrid_env: FakeSendGrid,
    redis_url: str,
    tmp_path: Path,
) -> None:
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}
    signer = Signer()
    launch("worker", "metrics-worker", **shared)
    base = serve_app(
        workers=2,
        DIGEST_METRICS_TOKEN=TOKEN,
        DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY=signer.public_key,
        **shared,
    )
    with session_scope() as session:
        publish(session, WEEK, at=utcnow())
        add_subscribers(session, 3, prefix="reader")
    signups = [f"new{n}@example.com" for n in range(6)]
    sign_up_and_confirm(base, sendgrid_env, signups)
    transactional = len(sendgrid_env.received())
    sendgrid_env.fail_next(429)  # the digest's first request: not taken, retried
    digest_id = send_a_digest(base)
    delivered = post_webhook(base, signer, digest_id)
    # The batch's lag is observed just after its events are counted (workers/metrics.py): a
    # scrape between the two would see the events and not the lag, so wait for both.
    found = eventually(
        lambda: (
            (s := scrape(base))
            and value(s, "digest_webhook_events_total", type="delivered") == delivered
            and value(s, "digest_webhook_lag_seconds_count") >= 1
            and s
        ),
        "the webhook events and their lag to be counted",
    )
    assert value(found, "digest_signups_total") == 6
    assert value(found, "digest_confirmations_total") == 1
    assert value(found, "digest_recipients_total", outcome="sent") == 4  # 3 readers + 1 new
    assert value(found, "digest_recipients_total", outcome="failed") == 0
    assert value(found, "digest_webhook_events_total", type="open") == 1
    assert value(found, "digest_webhook_lag_seconds_count") == 1
    accepted = len(sendgrid_env.received())
    assert value(found, "digest_sendgrid_responses_total", status="202") == accepted
    assert value(found, "digest_sendgrid_responses_total", status="429") == 1
    assert value(found, "digest_sendgrid_request_seconds_count") == accepted + 1
    assert accepted == transactional + 1  # one digest batch
    assert value(found, "digest_task_retries_total", task="digest.send_batch") == 1
    assert ("digest_queue_depth", (("queue", "celery"),)) in found
    for _ in range(4):  # whichever uvicorn process answers, the sums are the same
        assert value(scrape(base), "digest_signups_total") == 6

    before = time.time()
    Celery("metrics", broker=redis_url).send_task("digest.fire_weekly_slots")
    eventually(
        lambda: value(scrape(base), "digest_beat_last_tick_timestamp_seconds") >= before - 1,
        "the beat tick",
    )
