"""Mail after leaving (trust finding 8): a batch built after someone left never reaches them.

A batch may be retried hours after it was planned (SendGrid 5xx, 429, a lost worker); in that
time a reader can unsubscribe, complain, bounce, pause or be erased. The request is built from
the list as it is *now*: departed readers are left out and their deliveries marked `skipped`.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import update

from digest import sending
from digest.db import session_scope
from digest.ledger_counts import count_by_status
from schema.models import Delivery, DeliveryBatch, Digest, Subscriber
from tests.support.planned_rows import PlannedDigest, plan_rows
from tests.support.sendgrid_server import FakeSendGrid


def planned(recipients: int) -> PlannedDigest:
    with session_scope() as session:
        return plan_rows(session, recipients)


def set_status(address: str, **values: object) -> None:
    with session_scope() as session:
        session.execute(update(Subscriber).where(Subscriber.email == address).values(**values))


def delivery_statuses(digest_id: int) -> Counter[str]:
    with session_scope() as session:
        return +count_by_status(session, Delivery, digest_id)


def test_retried_batch_leaves_out_readers_who_left_after_the_first_attempt(
    sendgrid_env: FakeSendGrid,
) -> None:
    plan = planned(5)
    stays, unsubscribed, complained, erased, paused = plan.emails
    sendgrid_env.fail_next(500)
    first = sending.send_batch(plan.batch_ids[0])
    assert first.status == "retry"
    set_status(unsubscribed, status="unsubscribed")
    set_status(complained, status="complained")
    set_status(erased, status="deleted", email="deleted-x@invalid", name=None)
    set_status(paused, paused=True)
    assert sending.send_batch(plan.batch_ids[0]).status == "sent"
    [request] = sendgrid_env.received()
    assert [p["to"][0]["email"] for p in request["personalizations"]] == [stays]
    assert set(sendgrid_env.addresses()) == {stays}


def test_deliveries_to_departed_readers_are_skipped_not_failed_or_sent(
    sendgrid_env: FakeSendGrid,
) -> None:
    plan = planned(3)
    set_status(plan.emails[1], status="bounced")
    sending.send_batch(plan.batch_ids[0])
    assert delivery_statuses(plan.digest_id) == Counter({"sent": 2, "skipped": 1})


def test_batch_whose_readers_all_left_sends_nothing_and_closes_the_digest(
    sendgrid_env: FakeSendGrid,
) -> None:
    plan = planned(2)
    for address in plan.emails:
        set_status(address, status="unsubscribed")
    outcome = sending.send_batch(plan.batch_ids[0])
    assert outcome.status == "cancelled"
    assert sendgrid_env.received() == []
    with session_scope() as session:
        batch = session.get(DeliveryBatch, plan.batch_ids[0])
        digest = session.get(Digest, plan.digest_id)
        assert batch is not None and digest is not None
        assert batch.status == "cancelled"
        assert digest.status == "sent"
        assert "2 skipped" in (digest.status_reason or "")
