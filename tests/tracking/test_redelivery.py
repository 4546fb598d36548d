"""A redelivered body through `process_batch`, on PostgreSQL (binary COPY, ids drawn from the
sequence) and on the embedded default (INSERT … RETURNING): only the events not stored yet
are inserted, and only they have consequences."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import select

from digest.db import session_scope
from digest.tracking import WebhookBatchOutcome, process_batch
from digest.webhooks import store_batch
from schema.models import EmailEvent, Subscriber
from tests.support.sent_digests import T0, SentDigest, event_for, sent_digest
from tests.support.signed_webhooks import body_of

ADA, BO, CY = "ada@example.test", "bo@example.test", "cy@example.test"
BACKENDS = ["pg", "sqlite"]


def _process(events: list[dict]) -> WebhookBatchOutcome:
    with session_scope() as session:
        batch_id = store_batch(session, body_of(events), len(events)).id
    with session_scope() as session:
        return process_batch(session, batch_id)


@pytest.fixture(params=BACKENDS)
def sent(request: pytest.FixtureRequest) -> SentDigest:
    request.getfixturevalue(request.param)
    with session_scope() as session:
        return sent_digest(session, [ADA, BO, CY])


def test_a_redelivered_body_inserts_nothing(sent: SentDigest) -> None:
    events = [event_for(sent, "delivered", e, T0 + 60) for e in (ADA, BO, CY)]
    assert _process(events).inserted == 3
    again = _process(events)
    assert (again.inserted, again.duplicates, again.by_type) == (0, 3, {})


def test_a_body_mixing_stored_and_new_events_acts_on_the_new_ones_only(sent: SentDigest) -> None:
    first = [event_for(sent, "delivered", ADA, T0 + 60), event_for(sent, "delivered", BO, T0 + 61)]
    _process(first)
    new = [
        event_for(sent, "bounce", CY, T0 + 70, type="bounce", reason="550 no such user"),
        event_for(sent, "open", ADA, T0 + 80),
    ]
    outcome = _process([first[1], new[0], first[0], new[1]])
    assert (outcome.inserted, outcome.duplicates) == (2, 2)
    assert outcome.by_type == {"bounce": 1, "open": 1}
    assert outcome.status_changes == {"bounced": 1}
    with session_scope() as session:
        rows = session.execute(
            select(
                EmailEvent.sg_event_id, EmailEvent.event, EmailEvent.email, EmailEvent.delivery_id
            ).order_by(EmailEvent.id)
        ).all()
        statuses = {s.email: s.status for s in session.scalars(select(Subscriber))}
    assert [tuple(r) for r in rows] == [
        (e["sg_event_id"], e["event"], e["email"], sent.deliveries[e["email"]])
        for e in [*first, *new]
    ]
    assert statuses == {ADA: "active", BO: "active", CY: "bounced"}


def test_a_dropped_events_reason_still_decides_its_consequence(sent: SentDigest) -> None:
    outcome = _process([event_for(sent, "dropped", BO, T0 + 60, reason="Bounced Address")])
    assert outcome.status_changes == {"bounced": 1}


def test_processing_leaves_the_cycle_collector_on(sent: SentDigest) -> None:
    _process([event_for(sent, "delivered", ADA, T0 + 60)])
    assert gc.isenabled()


def test_a_batch_that_fails_leaves_the_cycle_collector_on(sent: SentDigest, monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr("digest.tracking.insert_new", broken)
    with pytest.raises(RuntimeError):
        _process([event_for(sent, "delivered", ADA, T0 + 60)])
    assert gc.isenabled()
