"""SendGrid events through the signed webhook: normalised, linked, deduplicated, suppressing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from digest.addresses import email_hash
from digest.db import reset_caches, session_scope
from digest.stats import digest_stats
from digest.tracking import process_batch
from digest.web.app import create_app
from schema.models import (
    EmailEvent,
    Subscriber,
    Suppression,
    WebhookBatch,
)
from tests.support.sent_digests import T0, SentDigest, event_for, sent_digest
from tests.support.signed_webhooks import Signer, eager_celery, post_events, sg_event

ADA, BO, CY = "ada@example.test", "bo@example.test", "cy@example.test"


@pytest.fixture
def client(signer: Signer) -> TestClient:
    return TestClient(create_app())


@pytest.fixture
def sent(signer: Signer) -> SentDigest:
    with session_scope() as session:
        return sent_digest(session, [ADA, BO, CY])


def post(client: TestClient, signer: Signer, events: list[dict]) -> None:
    response = post_events(client, signer, events)
    assert response.status_code == 204, response.text


def stored(**where) -> list[EmailEvent]:
    with session_scope() as session:
        query = select(EmailEvent).order_by(EmailEvent.id)
        for name, value in where.items():
            query = query.where(getattr(EmailEvent, name) == value)
        return list(session.scalars(query))


def status_of(sent: SentDigest, email: str) -> str:
    with session_scope() as session:
        return session.get(Subscriber, sent.subscribers[email]).status


def suppression_of(email: str) -> str | None:
    with session_scope() as session:
        return session.scalar(
            select(Suppression.reason).where(Suppression.email_hash == email_hash(email))
        )


# --- normalising and linking -----------------------------------------------------------------


def test_events_are_stored_and_linked_to_their_delivery(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "delivered", ADA, at=T0 + 5)])
    (event,) = stored()
    assert event.event == "delivered"
    assert event.delivery_id == sent.deliveries[ADA]
    assert event.digest_id == sent.digest_id
    assert event.occurred_at == datetime.fromtimestamp(T0 + 5, UTC)
    assert event.payload["sg_event_id"] == event.sg_event_id


def test_every_sendgrid_event_type_is_stored_by_name(client, signer, sent) -> None:
    names = [
        "processed",
        "dropped",
        "delivered",
        "deferred",
        "bounce",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    ]
    events = [event_for(sent, name, CY, at=T0 + i) for i, name in enumerate(names)]
    post(client, signer, events)
    assert [e.event for e in stored()] == names


def test_webhook_batch_delivered_twice_counts_once(client, signer, sent) -> None:
    events = [event_for(sent, "delivered", e) for e in (ADA, BO, CY)]
    events.append(event_for(sent, "bounce", BO, type="blocked", at=T0 + 90))
    post(client, signer, events)
    post(client, signer, events)
    assert len(stored()) == 4
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(WebhookBatch)) == 2
        assert session.get(Subscriber, sent.subscribers[BO]).soft_bounces == 1


def test_same_event_with_a_new_event_id_is_a_duplicate(client, signer, sent) -> None:
    first = event_for(sent, "delivered", ADA)
    again = {**first, "sg_event_id": "a-different-id-for-the-same-event"}
    post(client, signer, [first])
    post(client, signer, [again])
    assert len(stored(event="delivered")) == 1


def test_an_event_without_a_message_id_is_deduplicated_by_its_event_id(
    client, signer, sent
) -> None:
    event = event_for(sent, "delivered", ADA)
    del event["sg_message_id"]
    post(client, signer, [event])
    post(client, signer, [dict(event)])
    assert len(stored(event="delivered")) == 1


def test_events_with_neither_message_id_nor_event_id_are_never_merged(client, signer, sent) -> None:
    event = event_for(sent, "open", ADA)
    del event["sg_message_id"], event["sg_event_id"]
    post(client, signer, [event, dict(event)])
    assert len(stored(event="open")) == 2


def test_repeats_inside_one_body_are_stored_once(client, signer, sent) -> None:
    event = event_for(sent, "open", ADA)
    post(client, signer, [event, dict(event), dict(event)])
    assert len(stored(event="open")) == 1


def test_clicks_on_two_links_in_the_same_second_are_both_kept(client, signer, sent) -> None:
    post(
        client,
        signer,
        [
            event_for(sent, "click", ADA, at=T0 + 3600, url="https://shiporskip.example/a"),
            event_for(sent, "click", ADA, at=T0 + 3600, url="https://shiporskip.example/b"),
        ],
    )
    assert {e.url for e in stored(event="click")} == {
        "https://shiporskip.example/a",
        "https://shiporskip.example/b",
    }


def test_events_for_unknown_deliveries_are_kept_and_accepted(client, signer, sent) -> None:
    stray = sg_event(
        "delivered", "zed@example.test", timestamp=T0, delivery_id=987654, digest_id=424242
    )
    post(client, signer, [stray, event_for(sent, "delivered", ADA)])
    (kept,) = stored(email="zed@example.test")
    assert (kept.delivery_id, kept.digest_id) == (None, None)
    assert kept.payload["delivery_id"] == "987654"
    assert stored(email=ADA)[0].delivery_id == sent.deliveries[ADA]


def test_custom_args_naming_another_address_do_not_link(client, signer, sent) -> None:
    wrong = sg_event(
        "delivered", "zed@example.test", timestamp=T0, delivery_id=sent.deliveries[ADA]
    )
    post(client, signer, [wrong])
    assert stored()[0].delivery_id is None


def test_message_id_links_events_that_lack_custom_args(client, signer, sent) -> None:
    bare = sg_event("delivered", BO.upper(), timestamp=T0, message_id=sent.message_id)
    post(client, signer, [bare])
    (event,) = stored()
    assert (event.delivery_id, event.digest_id) == (sent.deliveries[BO], sent.digest_id)


def test_unknown_event_types_are_kept_with_their_name(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "amp_opened", ADA)])
    (event,) = stored()
    assert event.event == "amp_opened"
    assert event.delivery_id == sent.deliveries[ADA]


def test_odd_fields_do_not_fail_the_batch(client, signer, sent) -> None:
    odd = [
        {"email": {"not": "a string"}, "event": "open", "timestamp": "soon"},
        {"sg_event_id": "no-event-name", "timestamp": T0},
        {"event": "delivered", "email": ADA, "timestamp": 10**20, "delivery_id": "abc"},
        {"event": "delivered", "email": BO, "delivery_id": True, "digest_id": -4},
        {"event": "open\u0000", "email": "nul\u0000@example.test", "timestamp": T0},
        {"event": "click", "email": "\ud800@example.test", "url": "https://x.example/\udfff"},
    ]
    post(client, signer, odd)
    events = stored()
    assert [e.event for e in events] == [
        "open",
        "unknown",
        "delivered",
        "delivered",
        "open",
        "click",
    ]
    assert events[-2].email == "nul@example.test"
    assert events[-1].email == "?@example.test"
    assert all(e.delivery_id is None for e in events)
    with session_scope() as session:
        assert session.scalars(select(WebhookBatch.processed_at)).one() is not None


def test_processing_a_stored_batch_again_changes_nothing(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "bounce", ADA, type="blocked")])
    with session_scope() as session:
        batch_id = session.scalars(select(WebhookBatch.id)).one()
        session.get(WebhookBatch, batch_id).processed_at = None  # as if the worker crashed late
    with session_scope() as session:
        outcome = process_batch(session, batch_id)
    assert (outcome.inserted, outcome.duplicates) == (0, 1)
    with session_scope() as session:
        assert session.get(Subscriber, sent.subscribers[ADA]).soft_bounces == 1


# --- suppression -----------------------------------------------------------------------------


def test_hard_bounce_marks_bounced_and_suppresses_the_address(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "bounce", ADA, type="bounce", reason="550 no user")])
    assert stored()[0].bounce_class == "hard"
    assert status_of(sent, ADA) == "bounced"
    assert suppression_of(ADA) == "bounced"
    assert status_of(sent, BO) == "active"


def test_blocked_bounce_is_soft_and_only_counted(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "bounce", ADA, type="blocked")])
    assert stored()[0].bounce_class == "soft"
    assert status_of(sent, ADA) == "active"
    assert suppression_of(ADA) is None
    with session_scope() as session:
        assert session.get(Subscriber, sent.subscribers[ADA]).soft_bounces == 1


def test_bounce_blamed_on_our_reputation_is_soft(client, signer, sent) -> None:
    bounce = event_for(sent, "bounce", ADA, type="bounce", bounce_classification="Reputation")
    post(client, signer, [bounce])
    assert stored()[0].bounce_class == "soft"
    assert status_of(sent, ADA) == "active"


def test_soft_bounces_reaching_the_limit_mark_bounced(client, signer, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_SOFT_BOUNCE_LIMIT", "2")
    reset_caches()
    with session_scope() as session:
        first = sent_digest(session, [ADA], message_id="week1")
        second = sent_digest(session, [ADA], message_id="week2")
    post(client, signer, [event_for(first, "bounce", ADA, type="blocked")])
    assert status_of(first, ADA) == "active"
    post(client, signer, [event_for(second, "bounce", ADA, type="blocked")])
    assert status_of(first, ADA) == "bounced"
    assert suppression_of(ADA) == "bounced"


def test_a_delivery_resets_the_soft_bounce_count(client, signer) -> None:
    with session_scope() as session:
        weeks = [sent_digest(session, [ADA], message_id=f"week{i}") for i in range(4)]
    post(client, signer, [event_for(weeks[0], "bounce", ADA, type="blocked")])
    post(client, signer, [event_for(weeks[1], "bounce", ADA, type="blocked")])
    post(client, signer, [event_for(weeks[2], "delivered", ADA)])
    post(client, signer, [event_for(weeks[3], "bounce", ADA, type="blocked")])
    with session_scope() as session:
        subscriber = session.get(Subscriber, weeks[0].subscribers[ADA])
        assert (subscriber.status, subscriber.soft_bounces) == ("active", 1)


def test_soft_bounces_of_one_message_count_once(client, signer, sent) -> None:
    post(
        client,
        signer,
        [event_for(sent, "bounce", ADA, type="blocked", at=T0 + i * 600) for i in range(5)],
    )
    with session_scope() as session:
        subscriber = session.get(Subscriber, sent.subscribers[ADA])
        assert (subscriber.status, subscriber.soft_bounces) == ("active", 1)


def test_spam_report_marks_complained_and_suppresses(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "spamreport", BO)])
    assert status_of(sent, BO) == "complained"
    assert suppression_of(BO) == "complained"


@pytest.mark.parametrize("name", ["unsubscribe", "group_unsubscribe"])
def test_unsubscribe_events_mark_unsubscribed(client, signer, sent, name: str) -> None:
    post(client, signer, [event_for(sent, name, CY)])
    assert status_of(sent, CY) == "unsubscribed"
    with session_scope() as session:
        assert session.get(Subscriber, sent.subscribers[CY]).unsubscribed_at is not None


def test_a_later_unsubscribe_does_not_soften_a_complaint(client, signer, sent) -> None:
    post(
        client,
        signer,
        [
            event_for(sent, "spamreport", ADA, at=T0 + 100),
            event_for(sent, "unsubscribe", ADA, at=T0 + 200),
            event_for(sent, "bounce", ADA, type="bounce", at=T0 + 300),
        ],
    )
    assert status_of(sent, ADA) == "complained"
    assert suppression_of(ADA) == "complained"


def test_group_resubscribe_does_not_reactivate(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "group_unsubscribe", ADA, at=T0 + 100)])
    post(client, signer, [event_for(sent, "group_resubscribe", ADA, at=T0 + 200)])
    assert status_of(sent, ADA) == "unsubscribed"


def test_subscriber_is_found_by_address_without_a_delivery(client, signer, sent) -> None:
    post(client, signer, [sg_event("spamreport", "Ada@Example.TEST", timestamp=T0)])
    assert status_of(sent, ADA) == "complained"


def test_hard_bounce_of_an_unknown_address_is_still_suppressed(client, signer) -> None:
    post(client, signer, [sg_event("bounce", "ghost@example.test", timestamp=T0, type="bounce")])
    assert suppression_of("ghost@example.test") == "bounced"


def test_dropped_for_a_bounced_address_marks_bounced(client, signer, sent) -> None:
    post(client, signer, [event_for(sent, "dropped", CY, reason="Bounced Address")])
    assert status_of(sent, CY) == "bounced"


# --- the next digest -------------------------------------------------------------------------


def test_bounced_and_complained_addresses_are_left_out_of_the_next_digest_plan(
    client, signer, sent
) -> None:
    from digest.planning import plan_digest, request_digest
    from tests.support.factories import NOW, published, store
    from tests.support.recipients import deliveries

    post(
        client,
        signer,
        [
            event_for(sent, "bounce", ADA, type="bounce"),
            event_for(sent, "spamreport", BO),
        ],
    )
    with session_scope() as session:
        store(session, published(published_at=NOW - timedelta(days=1)))
        digest = request_digest(
            session, since=NOW - timedelta(days=7), until=NOW, now=NOW + timedelta(hours=1)
        )
        report = plan_digest(session, digest, now=NOW + timedelta(hours=1))
        planned = {email for _, _, email in deliveries(session, report.digest_id)}
    assert report.status == "sending"
    assert planned == {CY}


def test_webhook_events_work_on_the_embedded_default(sqlite: str, monkeypatch) -> None:
    signer = Signer()
    monkeypatch.setenv("DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key)
    reset_caches()
    with session_scope() as session:
        sent = sent_digest(session, [ADA, BO])
    events = [
        event_for(sent, "delivered", ADA),
        event_for(sent, "bounce", BO, type="bounce"),
        sg_event("delivered", "zed@example.test", timestamp=T0, delivery_id=555),
    ]
    with eager_celery():
        client = TestClient(create_app())
        post(client, signer, events)
        post(client, signer, events)
    assert len(stored()) == 3
    assert stored(email=ADA)[0].delivery_id == sent.deliveries[ADA]
    assert status_of(sent, BO) == "bounced"
    with session_scope() as session:
        figures = digest_stats(session, sent.digest_id)
    assert (figures["delivered"], figures["bounced"], figures["recipients"]) == (1, 1, 2)


def test_process_webhooks_command_picks_up_batches_no_worker_took(signer, sent) -> None:
    from typer.testing import CliRunner

    from digest.cli import app as cli
    from digest.webhooks import store_batch
    from tests.support.signed_webhooks import body_of

    with session_scope() as session:  # stored by the endpoint, but the broker was down
        store_batch(session, body_of([event_for(sent, "spamreport", CY)]), 1)
    result = CliRunner().invoke(cli, ["process-webhooks"])
    assert result.exit_code == 0, result.output
    assert "processed 1 batch(es)" in result.output
    assert status_of(sent, CY) == "complained"
    assert CliRunner().invoke(cli, ["process-webhooks"]).output.strip() == "processed 0 batch(es)"


def test_beat_requeues_webhook_bodies_left_unprocessed_past_the_grace(signer, sent) -> None:
    from sqlalchemy import update

    from digest.webhooks import store_batch
    from tests.support.signed_webhooks import body_of
    from workers.tasks import requeue_unprocessed_webhooks

    with session_scope() as session:  # stored by the endpoint, but the task was lost
        old_id = store_batch(session, body_of([event_for(sent, "spamreport", CY)]), 1).id
        store_batch(session, body_of([event_for(sent, "spamreport", BO)]), 1)
        session.execute(
            update(WebhookBatch)
            .where(WebhookBatch.id == old_id)
            .values(received_at=datetime.now(UTC) - timedelta(minutes=10))
        )
    requeued = requeue_unprocessed_webhooks()
    assert requeued == [old_id]
    assert status_of(sent, CY) == "complained"
    assert status_of(sent, BO) == "active"  # its own task may still be queued: left alone


def test_beat_schedule_names_only_registered_tasks() -> None:
    from workers.app import app as celery_app
    from workers.tasks import requeue_unprocessed_webhooks  # noqa: F401  (registers the tasks)

    scheduled = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert scheduled == {
        "digest.fire_weekly_slots",
        "digest.reap_stale_claims",
        "digest.requeue_orphaned_batches",
        "digest.requeue_planned_digests",
        "digest.requeue_unprocessed_webhooks",
        "digest.prune_webhook_bodies",
        "digest.requeue_site_events",
        "digest.requeue_stalled_imports",
    }
    assert scheduled <= set(celery_app.tasks)
