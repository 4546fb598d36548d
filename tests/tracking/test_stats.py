"""Per-digest figures: people not events, machine activity apart, and `digest stats`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from bench.procs import Proc, free_port, port_open, wait_for
from digest.cli import app as cli
from digest.db import session_scope
from digest.stats import digest_stats
from digest.web.app import create_app
from schema.models import DeliveryBatch, WebhookBatch
from tests.support.paths import REPO
from tests.support.sendgrid_fixtures import _module_sendgrid, fake_sendgrid, sendgrid_env  # noqa: F401
from tests.support.sent_digests import T0, SentDigest, event_for, sent_digest
from tests.support.signed_webhooks import Signer, post_events, sg_event

ADA, BO, CY, DI = "ada@example.test", "bo@example.test", "cy@example.test", "di@example.test"
ROOT = REPO
BIN = Path(sys.executable).parent  # the venv running the tests


@pytest.fixture
def client(signer: Signer) -> TestClient:
    return TestClient(create_app())


@pytest.fixture
def sent(signer: Signer) -> SentDigest:
    with session_scope() as session:
        return sent_digest(session, [ADA, BO, CY, DI])


def post(client: TestClient, signer: Signer, events: list[dict]) -> None:
    assert post_events(client, signer, events).status_code == 204


def stats(sent: SentDigest) -> dict:
    with session_scope() as session:
        return digest_stats(session, sent.digest_id)


HOUR = 3600


def test_figures_count_people_not_events(client, signer, sent) -> None:
    post(
        client,
        signer,
        [
            event_for(sent, "delivered", ADA, T0 + 5),
            event_for(sent, "delivered", BO, T0 + 5),
            event_for(sent, "open", ADA, T0 + HOUR),
            event_for(sent, "open", ADA, T0 + 2 * HOUR),
            event_for(sent, "open", ADA, T0 + 3 * HOUR),
            event_for(sent, "click", ADA, T0 + HOUR + 30, url="https://shiporskip.example/a"),
            event_for(sent, "click", ADA, T0 + 2 * HOUR, url="https://shiporskip.example/a"),
        ],
    )
    figures = stats(sent)
    assert figures["recipients"] == 4
    assert figures["sent"] == 4
    assert figures["delivered"] == 2
    assert (figures["unique_opens"], figures["human_unique_opens"]) == (1, 1)
    assert (figures["unique_clicks"], figures["human_unique_clicks"]) == (1, 1)


def test_every_figure_is_reported(client, signer, sent) -> None:
    post(
        client,
        signer,
        [
            event_for(sent, "processed", ADA, T0),
            event_for(sent, "deferred", ADA, T0 + 60),
            event_for(sent, "delivered", ADA, T0 + 120),
            event_for(sent, "bounce", BO, T0 + 5, type="bounce"),
            event_for(sent, "bounce", CY, T0 + 5, type="blocked"),
            event_for(sent, "dropped", DI, T0 + 1, reason="Invalid"),
            event_for(sent, "unsubscribe", ADA, T0 + HOUR),
            event_for(sent, "group_unsubscribe", ADA, T0 + HOUR + 1),
            event_for(sent, "amp_opened", ADA, T0 + HOUR),
        ],
    )
    figures = stats(sent)
    assert {k: figures[k] for k in ("processed", "deferred", "delivered", "dropped")} == {
        "processed": 1,
        "deferred": 1,
        "delivered": 1,
        "dropped": 1,
    }
    assert (figures["bounced"], figures["soft_bounced"]) == (1, 1)
    assert figures["unsubscribes"] == 1
    assert figures["other_events"] == {"amp_opened": 1}


def test_complaints_are_counted_apart_from_bounces(client, signer, sent) -> None:
    post(
        client,
        signer,
        [
            event_for(sent, "bounce", ADA, T0 + 5, type="bounce"),
            event_for(sent, "spamreport", BO, T0 + HOUR),
            event_for(sent, "spamreport", CY, T0 + HOUR),
        ],
    )
    figures = stats(sent)
    assert (figures["bounced"], figures["complaints"]) == (1, 2)


def test_apple_privacy_opens_are_machine_opens(client, signer, sent) -> None:
    post(
        client,
        signer,
        [
            event_for(sent, "open", ADA, T0 + 30, sg_machine_open=True),
            event_for(sent, "open", BO, T0 + HOUR, sg_machine_open=False),
        ],
    )
    figures = stats(sent)
    assert figures["unique_opens"] == 2
    assert figures["human_unique_opens"] == 1
    assert figures["machine_opens"] == 1


def test_a_click_seconds_after_delivery_is_machine(client, signer, sent) -> None:
    post(
        client,
        signer,
        [
            event_for(sent, "delivered", ADA, T0 + 100),
            event_for(sent, "click", ADA, T0 + 103, url="https://shiporskip.example/a"),
            event_for(sent, "delivered", BO, T0 + 100),
            event_for(sent, "click", BO, T0 + 100 + HOUR, url="https://shiporskip.example/a"),
        ],
    )
    figures = stats(sent)
    assert figures["unique_clicks"] == 2
    assert figures["human_unique_clicks"] == 1
    assert figures["machine_clicks"] == 1


def test_every_link_clicked_within_seconds_is_machine(client, signer, sent) -> None:
    links = [f"https://shiporskip.example/{slug}" for slug in ("a", "b", "c", "d")]
    burst = [
        event_for(sent, "click", CY, T0 + 2 * HOUR + i, url=url) for i, url in enumerate(links)
    ]
    post(client, signer, burst)
    figures = stats(sent)
    assert figures["human_unique_clicks"] == 0
    assert figures["machine_clicks"] == 4


def test_a_late_delivered_event_rejudges_earlier_clicks(client, signer, sent) -> None:
    post(
        client,
        signer,
        [event_for(sent, "click", DI, T0 + HOUR + 4, url="https://shiporskip.example/a")],
    )
    assert stats(sent)["human_unique_clicks"] == 1
    post(client, signer, [event_for(sent, "delivered", DI, T0 + HOUR)])
    figures = stats(sent)
    assert (figures["human_unique_clicks"], figures["machine_clicks"]) == (0, 1)


def test_ambiguous_and_failed_batches_and_deliveries_are_reported(signer) -> None:
    with session_scope() as session:
        first = sent_digest(session, [ADA, BO], message_id="m1")
        session.add_all(
            DeliveryBatch(digest_id=first.digest_id, segment_id=1, seq=seq, status=status)
            for seq, status in ((2, "ambiguous"), (3, "failed"), (4, "failed"))
        )
    figures = stats(first)
    assert (figures["ambiguous_batches"], figures["failed_batches"]) == (1, 2)
    assert figures["batches_by_status"] == {"ambiguous": 1, "failed": 2, "sent": 1}


def test_unknown_digest_is_a_lookup_error(signer) -> None:
    with session_scope() as session, pytest.raises(LookupError):
        digest_stats(session, 999)


def test_stats_command_shows_the_latest_digest_by_default(client, signer) -> None:
    with session_scope() as session:
        sent_digest(session, [ADA], message_id="older")
        newer = sent_digest(session, [BO], message_id="newer")
    post(client, signer, [event_for(newer, "delivered", BO, T0 + 5)])
    result = CliRunner().invoke(cli, ["stats", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["digest"]["id"], figures["delivered"]) == (newer.digest_id, 1)


def test_stats_command_prints_a_table(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "delivered", ADA, T0 + 5)])
    result = CliRunner().invoke(cli, ["stats", str(sent.digest_id)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert f"digest {sent.digest_id}" in result.output
    rows = [[cell.strip() for cell in line.split("│") if cell.strip()] for line in lines(result)]
    assert ["delivered", "1"] in rows
    assert ["bounced", "0"] in rows


def lines(result) -> list[str]:
    return result.output.splitlines()


def test_stats_command_for_an_unknown_digest_exits_1(signer) -> None:
    result = CliRunner().invoke(cli, ["stats", "4242"])
    assert result.exit_code == 1
    assert "4242" in result.output


# --- the whole path: plan, send to the fake SendGrid, replay its webhook, read the figures ----


class Replay:
    """What SendGrid would post back for the requests the fake SendGrid accepted."""

    def __init__(self, requests: list[dict]) -> None:
        self.recipients: dict[str, tuple[str, dict]] = {}
        for request in requests:
            for personalization in request["personalizations"]:
                address = personalization["to"][0]["email"].lower()
                args = personalization.get("custom_args", {})
                self.recipients[address] = (request["_message_id"], args)

    def event(self, address: str, event: str, at: int, **extra) -> dict:
        message_id, args = self.recipients[address]
        # SendGrid copies a personalization's custom_args to the top level of each event.
        return {**sg_event(event, address, timestamp=at, message_id=message_id, **extra), **args}


@pytest.fixture
def live_stack(
    pg: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Signer, object]]:
    """The fake SendGrid, plus the web app under uvicorn and a Celery worker (real processes)."""
    fake = request.getfixturevalue("sendgrid_env")
    signer = Signer()
    port = free_port()
    env = {
        "DIGEST_BROKER_URL": redis_url,
        "DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key,
    }
    web = Proc(
        "webhook-web",
        [str(BIN / "digest"), "serve", "--port", str(port)],
        env=env,
        log_dir=tmp_path,
    ).start()
    worker = Proc(
        "webhook-worker",
        [
            str(BIN / "celery"),
            "-A",
            "workers",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        log_dir=tmp_path,
    ).start()
    try:
        wait_for(lambda: port_open(port) or not web.alive, 30, what="uvicorn")
        wait_for(lambda: "ready." in worker.log_tail(200) or not worker.alive, 60, what="worker")
        assert web.alive, web.log_tail()
        assert worker.alive, worker.log_tail()
        yield f"http://127.0.0.1:{port}", signer, fake
    finally:
        web.stop()
        worker.stop()


def test_digest_stats_after_a_send_and_a_webhook_replay(live_stack) -> None:
    from digest import sending
    from digest.planning import plan_digest, request_digest
    from schema.models import Subscriber
    from tests.support.factories import NOW, published, store

    base_url, signer, fake = live_stack
    addresses = [ADA, BO, CY, DI, "ed@example.test"]
    with session_scope() as session:
        session.add_all(Subscriber(email=a, name="Reader", status="active") for a in addresses)
        store(session, published(published_at=NOW - timedelta(days=1)))
        digest = request_digest(
            session, since=NOW - timedelta(days=7), until=NOW, now=NOW + timedelta(hours=1)
        )
        report = plan_digest(session, digest, now=NOW + timedelta(hours=1))
    for batch_id in report.batch_ids:
        assert sending.send_batch(batch_id).status == "sent"

    replay = Replay(fake.received())
    assert sorted(replay.recipients) == sorted(addresses)
    t = int(NOW.timestamp()) + 2 * HOUR
    link = "https://shiporskip.example/compare/quillmate-vs-parsewell"
    events = [replay.event(a, "processed", t) for a in addresses]
    events += [replay.event(a, "delivered", t + 5) for a in (ADA, BO, CY, DI)]
    events += [
        replay.event("ed@example.test", "bounce", t + 5, type="bounce", reason="550 no user"),
        replay.event(ADA, "open", t + HOUR),
        replay.event(ADA, "click", t + HOUR + 20, url=link),
        replay.event(BO, "open", t + 60, sg_machine_open=True),
        replay.event(CY, "click", t + 7, url=link),  # a link scanner, 2 s after delivery
        replay.event(DI, "spamreport", t + 2 * HOUR),
        replay.event(CY, "unsubscribe", t + 3 * HOUR),
    ]
    with httpx.Client(base_url=base_url, timeout=30) as http:
        assert post_events(http, signer, events).status_code == 204
        assert post_events(http, signer, events).status_code == 204  # SendGrid retried

    def both_processed() -> bool:
        with session_scope() as session:
            done = session.scalars(select(WebhookBatch.processed_at)).all()
            return len(done) == 2 and all(done)

    wait_for(both_processed, 60, what="the worker to process both webhook batches")
    result = subprocess.run(
        [str(BIN / "digest"), "stats", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["digest"]["id"] == report.digest_id
    assert {name: figures[name] for name in EXPECTED} == EXPECTED
    with session_scope() as session:
        statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    assert statuses == {
        ADA: "active",
        BO: "active",
        CY: "unsubscribed",
        DI: "complained",
        "ed@example.test": "bounced",
    }


EXPECTED = {
    "recipients": 5,
    "sent": 5,
    "failed_deliveries": 0,
    "processed": 5,
    "delivered": 4,
    "deferred": 0,
    "bounced": 1,
    "soft_bounced": 0,
    "complaints": 1,
    "unique_opens": 2,
    "human_unique_opens": 1,
    "machine_opens": 1,
    "unique_clicks": 2,
    "human_unique_clicks": 1,
    "machine_clicks": 1,
    "unsubscribes": 1,
    "ambiguous_batches": 0,
    "failed_batches": 0,
}


def test_admin_digest_endpoint_carries_the_same_figures(client, signer, sent) -> None:
    from tests.support.services import ADMIN_TOKEN

    post(
        client,
        signer,
        [event_for(sent, "delivered", ADA, T0 + 5), event_for(sent, "spamreport", BO, T0 + 9)],
    )
    response = client.get(
        f"/admin/digests/{sent.digest_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    figures = response.json()["stats"]
    assert (figures["delivered"], figures["complaints"], figures["recipients"]) == (1, 1, 4)
    assert {k: v for k, v in stats(sent).items() if k != "digest"} == figures
