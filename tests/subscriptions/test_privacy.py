"""Erasure is complete and export is whole (finding 6 of the trust issue).

The attack: a person receives a digest, SendGrid posts signed events about them (delivered, open,
click, a bounce whose reason quotes the address, one body still waiting for a worker), then they
ask us to forget them. Afterwards every string, text and JSON column of every table is searched
for the address (any case) and the name: nothing may be left.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from digest import privacy, subscriptions
from digest.addresses import email_hash
from digest.db import reset_caches, session_scope
from digest.tokens import data_token
from digest.tracking import process_batch, prune_processed_bodies
from digest.web.app import create_app
from digest.webhooks import store_batch
from schema.models import (
    Delivery,
    EmailEvent,
    Subscriber,
    Suppression,
    WebhookBatch,
)
from tests.support.erasure_scenario import (
    ADA,
    BOB,
    bob_events,
    event_for,
    hits,
    leftovers,
    post,
    receive_digest,
)
from tests.support.sent_digests import T0, SentDigest, sent_digest
from tests.support.signed_webhooks import Signer, body_of, eager_celery, sg_event


def delete_me(client: TestClient, subscriber_id: int) -> None:
    """The person's own "delete me", through the expiring data link emailed to them."""
    with session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        address = subscriber.email
    response = client.post(f"/data/{data_token(subscriber_id, address)}/delete")
    assert response.status_code == 200, response.text


@pytest.fixture
def client(signer: Signer) -> TestClient:
    return TestClient(create_app())


# --- the attack: anything left after "delete me"? -------------------------------------------------


def test_after_delete_me_no_column_of_any_table_holds_the_address_or_name(
    client: TestClient, attacked: SentDigest
) -> None:
    delete_me(client, attacked.subscribers[BOB])
    assert leftovers() == {}


def test_other_peoples_rows_survive_erasure(client: TestClient, attacked: SentDigest) -> None:
    delete_me(client, attacked.subscribers[BOB])
    with session_scope() as session:
        ada_events = session.scalars(select(EmailEvent).where(EmailEvent.email == ADA)).all()
        assert [e.event for e in ada_events] == ["delivered"]
        assert ada_events[0].payload["email"] == ADA
        assert session.get(Subscriber, attacked.subscribers[ADA]).email == ADA


def test_an_unprocessed_body_still_processes_after_erasure(
    client: TestClient, attacked: SentDigest
) -> None:
    delete_me(client, attacked.subscribers[BOB])
    with session_scope() as session:
        (waiting,) = session.scalars(
            select(WebhookBatch.id).where(WebhookBatch.processed_at.is_(None))
        ).all()
        outcome = process_batch(session, waiting)
    assert (outcome.events, outcome.inserted) == (2, 2)
    with session_scope() as session:
        opens = session.scalars(
            select(EmailEvent).where(EmailEvent.event == "open").order_by(EmailEvent.id)
        ).all()
        linked = {e.delivery_id for e in opens}
    assert linked == {attacked.deliveries[BOB], attacked.deliveries[ADA]}
    assert leftovers() == {}


def test_operator_erase_command_leaves_nothing(attacked: SentDigest) -> None:
    from digest.cli import app as cli

    result = CliRunner().invoke(cli, ["subscribers", "erase", BOB.upper()])
    assert result.exit_code == 0, result.output
    assert "erased" in result.output
    assert leftovers() == {}
    with session_scope() as session:
        row = session.get(Subscriber, attacked.subscribers[BOB])
        assert row.status == "deleted"


def test_erasure_keeps_the_hashed_suppression(client: TestClient, attacked: SentDigest) -> None:
    delete_me(client, attacked.subscribers[BOB])
    with session_scope() as session:
        reasons = session.scalars(
            select(Suppression.reason).where(Suppression.email_hash == email_hash(BOB))
        ).all()
    # The bounce had suppressed the address as `bounced`; erasure makes it `deleted`.
    assert reasons == ["deleted"]


def test_events_arriving_after_erasure_are_stored_without_the_address(
    client: TestClient, signer: Signer, attacked: SentDigest
) -> None:
    delete_me(client, attacked.subscribers[BOB])
    late = event_for(
        attacked, "bounce", BOB, at=T0 + 5000, type="bounce", reason=f"550 <{BOB}> gone"
    )
    post(client, signer, [late])
    assert leftovers() == {}
    with session_scope() as session:
        stored = session.scalar(
            select(EmailEvent).where(EmailEvent.sg_event_id == late["sg_event_id"])
        )
    assert stored is not None and stored.email is None
    assert "erased@invalid" in stored.payload["reason"]


def test_operator_can_erase_an_address_known_only_from_events(
    client: TestClient, signer: Signer
) -> None:
    stranger = "Stranger.Danger@y.example"
    post(
        client,
        signer,
        [sg_event("bounce", stranger, timestamp=T0, reason=f"550 <{stranger.upper()}> unknown")],
    )
    with session_scope() as session:
        report = privacy.erase_address(session, stranger)
    assert report.erased and report.subscriber_id is None
    assert hits(stranger) == []


def test_erasure_on_the_embedded_default_leaves_nothing(sqlite: str, monkeypatch) -> None:
    signer = Signer()
    monkeypatch.setenv("DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key)
    reset_caches()
    sent = receive_digest()
    with eager_celery():
        client = TestClient(create_app())
        post(client, signer, bob_events(sent))
        with session_scope() as session:
            store_batch(session, body_of([event_for(sent, "open", BOB, at=T0 + 900)]), 1)
        assert hits(BOB)
        delete_me(client, sent.subscribers[BOB])
    assert leftovers() == {}


def test_erasure_leaves_longer_addresses_that_contain_the_erased_one_alone(
    client: TestClient, signer: Signer
) -> None:
    """Erasing bob@x.example must not touch jimbob@x.example or bob@x.example.org."""
    bob, jimbob, bob_org = "bob@x.example", "jimbob@x.example", "bob@x.example.org"
    with session_scope() as session:
        sent = sent_digest(session, [bob, jimbob, bob_org])
    others = [
        event_for(sent, "bounce", who, type="bounce", reason=f"550 <{who}> unknown")
        for who in (jimbob, bob_org)
    ]
    post(client, signer, [event_for(sent, "delivered", bob), *others])
    delete_me(client, sent.subscribers[bob])
    with session_scope() as session:
        for who in (jimbob, bob_org):
            (event,) = session.scalars(select(EmailEvent).where(EmailEvent.email == who)).all()
            assert event.payload["reason"] == f"550 <{who}> unknown"
            assert event.delivery_id == sent.deliveries[who]
            delivery = session.get(Delivery, sent.deliveries[who])
            assert delivery.email == who
        (body,) = session.scalars(select(WebhookBatch.body)).all()
    assert json.loads(body)[1]["email"] == jimbob
    assert json.loads(body)[2]["reason"] == f"550 <{bob_org}> unknown"
    assert f'"{bob}"' not in body


# --- redaction, for any text ----------------------------------------------------------------------

ADDRESS = "Bob.Q+news@x.example"
SEPARATORS = st.sampled_from([" ", "<", ">", ":", "=", '"', "(", ")", ",", ";", "\n", "/"])
NOISE = st.text(alphabet=st.characters(blacklist_characters="@"), max_size=30)


def _case_variant(draw: st.DrawFn) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(ADDRESS), max_size=len(ADDRESS)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(ADDRESS, flips, strict=True))


@st.composite
def texts_quoting_the_address(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        variant = _case_variant(draw)
        if draw(st.booleans()):
            variant = quote(variant, safe="")
        parts += [draw(NOISE), draw(SEPARATORS), variant, draw(SEPARATORS)]
    return "".join([*parts, draw(NOISE)])


@given(texts_quoting_the_address())
def test_redaction_removes_the_address_in_any_case_and_spelling(value: str) -> None:
    redacted = privacy.Redaction(ADDRESS, "deleted-1@invalid").text(value)
    assert ADDRESS.lower() not in redacted.lower()
    assert quote(ADDRESS, safe="").lower() not in redacted.lower()


@given(st.text())
def test_redaction_leaves_text_without_the_address_unchanged(value: str) -> None:
    if ADDRESS.lower() in value.lower() or quote(ADDRESS, safe="").lower() in value.lower():
        return
    assert privacy.Redaction(ADDRESS, "deleted-1@invalid").text(value) == value


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | NOISE | texts_quoting_the_address(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(NOISE | texts_quoting_the_address(), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(JSON_VALUES)
def test_redaction_reaches_every_string_of_nested_json(value: object) -> None:
    redacted = privacy.Redaction(ADDRESS, "deleted-1@invalid").json(value)
    assert ADDRESS.lower() not in json.dumps(redacted, ensure_ascii=False).lower()


# --- retention of raw webhook bodies --------------------------------------------------------------


def test_processed_bodies_past_the_retention_are_pruned_and_unprocessed_kept(
    client: TestClient, signer: Signer, attacked: SentDigest
) -> None:
    now = datetime.now(UTC)
    with session_scope() as session:
        processed = session.scalars(
            select(WebhookBatch.id)
            .where(WebhookBatch.processed_at.is_not(None))
            .order_by(WebhookBatch.id)
        ).all()
        old, recent = processed[:-1], processed[-1]
        session.execute(
            update(WebhookBatch)
            .where(WebhookBatch.id.in_(old))
            .values(processed_at=now - timedelta(hours=25))
        )
        session.execute(
            update(WebhookBatch)
            .where(WebhookBatch.processed_at.is_(None))
            .values(received_at=now - timedelta(days=3))
        )
    with session_scope() as session:
        assert prune_processed_bodies(session, timedelta(hours=24), now) == len(old)
    with session_scope() as session:
        left = session.execute(select(WebhookBatch.id, WebhookBatch.processed_at)).all()
    assert {batch_id for batch_id, _ in left} >= {recent}
    assert not set(old) & {batch_id for batch_id, _ in left}
    assert any(at is None for _, at in left)  # the unprocessed body waits for its worker


def test_retention_zero_prunes_every_processed_body(attacked: SentDigest) -> None:
    with session_scope() as session:
        prune_processed_bodies(session, timedelta(0))
    with session_scope() as session:
        left = session.scalars(select(WebhookBatch.processed_at)).all()
    assert left == [None]


def test_events_of_a_pruned_body_delivered_again_count_once(
    client: TestClient, signer: Signer, attacked: SentDigest
) -> None:
    with session_scope() as session:
        before = session.scalar(select(func.count()).select_from(EmailEvent))
        prune_processed_bodies(session, timedelta(0))
    post(client, signer, bob_events(attacked))  # SendGrid redelivers the same events
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(EmailEvent)) == before


def test_beat_prunes_with_the_retention_setting(
    attacked: SentDigest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.tasks import prune_webhook_bodies

    monkeypatch.setenv("DIGEST_WEBHOOK_BODY_RETENTION_HOURS", "0")
    reset_caches()
    assert prune_webhook_bodies() == 3
    with session_scope() as session:
        pending = session.scalars(select(WebhookBatch.processed_at)).all()
    assert pending == [None]


def test_the_requeue_sweep_still_finds_unprocessed_bodies_after_a_prune(
    attacked: SentDigest,
) -> None:
    from workers.tasks import requeue_unprocessed_webhooks

    with session_scope() as session:
        prune_processed_bodies(session, timedelta(0))
        session.execute(
            update(WebhookBatch).values(received_at=datetime.now(UTC) - timedelta(hours=1))
        )
    with eager_celery():
        requeued = requeue_unprocessed_webhooks()
    assert len(requeued) == 1
    with session_scope() as session:
        assert session.scalars(select(WebhookBatch.processed_at)).one() is not None
        opens = session.scalar(
            select(func.count()).select_from(EmailEvent).where(EmailEvent.event == "open")
        )
    assert opens == 3  # Bob's first open, then the waiting body's opens for Bob and Ada


def test_a_redelivered_task_for_a_pruned_body_does_nothing(attacked: SentDigest) -> None:
    from workers.tasks import process_webhook_batch

    with session_scope() as session:
        batch_id = session.scalar(select(func.min(WebhookBatch.id)))
        prune_processed_bodies(session, timedelta(0))
    assert process_webhook_batch(batch_id) == 0


# --- export ------------------------------------------------------------------------------------


def test_export_includes_the_persons_events_and_nobody_elses(attacked: SentDigest) -> None:
    with session_scope() as session:
        data = subscriptions.export_data(session, attacked.subscribers[BOB])
    events = data["events"]
    assert [e["event"] for e in events] == ["delivered", "open", "click", "click", "bounce"]
    assert {e["digest_id"] for e in events} == {attacked.digest_id}
    assert {e["delivery_id"] for e in events} == {attacked.deliveries[BOB]}
    click = events[2]
    assert click["url"].startswith("https://shiporskip.example/c")
    assert events[1]["machine"] is False
    assert events[4]["bounce_class"] == "hard"
    assert datetime.fromisoformat(events[0]["occurred_at"]) == datetime.fromtimestamp(T0 + 5, UTC)
    assert ADA not in str(data)
