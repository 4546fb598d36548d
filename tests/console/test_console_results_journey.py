"""A digest's results in Chromium, for real: the app under uvicorn and a Celery worker (child
processes) on PostgreSQL and Redis, mailing the SendGrid-compatible stand-in. The digest is sent
by the worker; SendGrid's events for what the stand-in accepted are posted signed to the app's
webhook and processed by the worker; an operator signs in, follows the dashboard's link to the
results and finds the figures of `digest stats --json`, the 48-hour chart drawn under the strict
CSP (no violation in the browser's console), screenshots at 1280 and 375 px
(test-artifacts/console-results-*.png) and no serious or critical axe violation."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from playwright.sync_api import Browser, Page
from sqlalchemy import select
from typer.testing import CliRunner

from bench.procs import Proc, free_port, port_open, wait_for
from digest.cli import app as cli
from digest.db import reset_caches, session_scope
from digest.planning import plan_digest, request_digest
from schema.models import Digest, WebhookBatch, utcnow
from tests.support.accessibility import blocking_violations
from tests.support.console_fixtures import PASSWORD, sign_in_in_browser
from tests.support.figures import page_figures
from tests.support.paths import ARTIFACTS
from tests.support.planning_worker import Launch
from tests.support.recipients import add_subscribers, publish
from tests.support.results_world import HOUR, WEEK
from tests.support.sendgrid_server import FakeSendGrid
from tests.support.signed_webhooks import Signer, post_events, sg_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

EMAIL = "analyst@example.com"
FUNNEL = ("sent", "delivered", "human_unique_opens", "human_unique_clicks", "machine_opens")
FUNNEL += ("machine_clicks", "bounced", "complaints", "unsubscribes")


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def web(
    worker_env: dict[str, str],
    signer: Signer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The app under uvicorn in a child process, trusting our webhook key."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DIGEST_PUBLIC_URL", base)
    reset_caches()
    argv = [sys.executable, "-m", "uvicorn", "digest.web.app:app", f"--port={port}"]
    env = {
        **worker_env,
        "DIGEST_PUBLIC_URL": base,
        "DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key,
    }
    proc = Proc("results-web", argv, env=env, log_dir=tmp_path).start()
    try:
        wait_for(lambda: port_open(port) or not proc.alive, 60, what="uvicorn to listen")
        assert proc.alive, proc.log_tail()
        yield base
    finally:
        proc.stop(timeout=10)
        reset_caches()


def send_digest(redis_url: str) -> int:
    """Three comparisons to five readers, planned here and sent by the worker."""
    now = utcnow()
    with session_scope() as session:
        publish(session, WEEK, at=now)
        add_subscribers(session, 5, prefix="reader")
        digest = request_digest(session, since=now - timedelta(days=7), until=now, now=now)
        report = plan_digest(session, digest, now=now)
    producer = Celery("results-journey", broker=redis_url)
    for batch_id in report.batch_ids:
        producer.send_task("digest.send_batch", args=[batch_id])

    def sent() -> bool:
        with session_scope() as session:
            return session.get(Digest, report.digest_id).status == "sent"

    eventually(sent, "the worker to send the digest", timeout=90)
    return report.digest_id


def replay(sendgrid: FakeSendGrid) -> list[dict[str, Any]]:
    """What SendGrid would post back: deliveries, a bounce, opens (one by Apple's proxy),
    people's clicks on two comparisons, a link scanner's click, a complaint, an unsubscribe."""
    [body] = sendgrid.received()
    html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
    links = [
        next(h for h in html.split('href="')[1:] if f"utm_content={slug}" in h).split('"')[0]
        for slug, _ in WEEK
    ]
    readers = [(p["to"][0]["email"], p.get("custom_args", {})) for p in body["personalizations"]]
    t = int(time.time())

    def ev(n: int, event: str, after: int, **extra: Any) -> dict[str, Any]:
        address, args = readers[n]
        return {**sg_event(event, address, timestamp=t + after, **extra), **args}

    events = [ev(n, "delivered", 5) for n in range(4)]
    events += [
        ev(4, "bounce", 6, type="bounce", reason="550 no such user"),
        ev(0, "open", 30, sg_machine_open=True),
        ev(0, "open", HOUR),
        ev(1, "open", 2 * HOUR),
        ev(2, "open", 3 * HOUR),
        ev(0, "click", HOUR + 20, url=links[0].replace("&amp;", "&")),
        ev(1, "click", 2 * HOUR + 5, url=links[1].replace("&amp;", "&")),
        ev(2, "click", 8, url=links[2].replace("&amp;", "&")),  # 3 s after delivery: a scanner
        ev(3, "spamreport", 4 * HOUR),
        ev(2, "unsubscribe", 5 * HOUR),
    ]
    return events


def sign_in(page: Page, web: str) -> None:
    sign_in_in_browser(page, web, "/console", EMAIL)


def test_an_operator_reads_a_sent_digests_results_in_chromium(
    web: str,
    launch: Launch,
    redis_url: str,
    signer: Signer,
    sendgrid_env: FakeSendGrid,
    chromium: Browser,
) -> None:
    launch("worker", "results-worker", DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY=signer.public_key)
    made = CliRunner().invoke(
        cli, ["operators", "add", EMAIL, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert made.exit_code == 0, made.output
    digest_id = send_digest(redis_url)
    with httpx.Client(base_url=web, timeout=30) as http:
        assert post_events(http, signer, replay(sendgrid_env)).status_code == 204

    def processed() -> bool:
        with session_scope() as session:
            done = session.scalars(select(WebhookBatch.processed_at)).all()
            return len(done) == 1 and all(done)

    eventually(processed, "the worker to process the webhook batch", timeout=90)
    stats = CliRunner().invoke(cli, ["stats", str(digest_id), "--json"])
    assert stats.exit_code == 0, stats.output
    document = json.loads(stats.output)
    assert (document["delivered"], document["human_unique_clicks"]) == (4, 2)

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    sign_in(page, web)
    page.get_by_role("link", name=f"results of digest {digest_id}").click()
    page.wait_for_url(f"**/console/digests/{digest_id}/results")
    page.locator("#activity[data-chart-drawn]").wait_for(state="attached")
    assert page.locator("figure.chart canvas").count() >= 2  # the 48 hours, clicks by rank
    shown = page_figures(page.content())
    assert {n: shown.one(n) for n in FUNNEL} == {n: document[n] for n in FUNNEL}
    for c in document["clicks"]["comparisons"]:
        assert (
            shown.one("human_clicks", "clicks-per-comparison", comparison=c["slug"])
            == (c["human_clicks"])
        )
    hours = [
        [h[n] for n in ("delivered", "human_opens", "human_clicks")]
        for h in document["activity"]["hours"]
    ]
    assert [row[:3] for row in shown.charts["activity"]] == hours
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"console-results-{width}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, width
    assert blocked == []
    context.close()

    audit = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = audit.new_page()
    sign_in(page, web)
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{web}/console/digests/{digest_id}/results")
        assert blocking_violations(page) == [], width
    audit.close()
