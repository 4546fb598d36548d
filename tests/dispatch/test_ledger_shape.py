"""The ledger after a 202: the batch row records it; its deliveries read as sent without being
rewritten; what happened to one recipient (failed, skipped) stays on that recipient's row."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select, update

from digest import sending
from digest.data_export import export_data
from digest.db import session_scope
from digest.ledger_counts import count_by_status, counts_by_digest
from digest.ledger_lookup import find_recipient
from schema.models import Delivery, DeliveryBatch, Subscriber
from tests.support.planned_rows import PlannedDigest, plan_rows
from tests.support.sendgrid_server import FakeSendGrid


def plan(recipients: int) -> PlannedDigest:
    with session_scope() as session:
        return plan_rows(session, recipients)


def raw_statuses(digest_id: int) -> Counter[str]:
    with session_scope() as session:
        return Counter(
            session.scalars(select(Delivery.status).where(Delivery.digest_id == digest_id))
        )


def test_a_202_is_written_on_the_batch_row_alone(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(3)
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    assert raw_statuses(planned.digest_id) == {"pending": 3}  # no row rewritten
    with session_scope() as session:
        assert count_by_status(session, Delivery, planned.digest_id) == {"sent": 3}
        assert counts_by_digest(session, Delivery, [planned.digest_id])[planned.digest_id] == {
            "sent": 3
        }


def test_pending_deliveries_of_an_unsent_batch_stay_pending(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(2)
    with session_scope() as session:
        assert count_by_status(session, Delivery, planned.digest_id) == {"pending": 2}


def test_a_rejected_address_stays_failed_in_a_sent_batch(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(3)
    sendgrid_env.reject_addresses([planned.emails[0]])
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    with session_scope() as session:
        assert count_by_status(session, Delivery, planned.digest_id) == {"sent": 2, "failed": 1}
        (trace,) = find_recipient(session, planned.digest_id, planned.emails[0])
        assert trace.status == "failed"
        (sent,) = find_recipient(session, planned.digest_id, planned.emails[1])
        assert (sent.status, sent.batch_status) == ("sent", "sent")


def test_a_reader_who_left_stays_skipped_in_a_sent_batch(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(3)
    with session_scope() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == planned.emails[2])
            .values(status="unsubscribed")
        )
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    with session_scope() as session:
        assert count_by_status(session, Delivery, planned.digest_id) == {"sent": 2, "skipped": 1}


def test_a_413_split_sends_both_halves_and_every_delivery_reads_sent(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(8)
    sendgrid_env.fail_next(413)
    first = sending.send_batch(planned.batch_ids[0])
    assert first.status == "split"
    for batch_id in first.enqueue:
        assert sending.send_batch(batch_id).status == "sent"
    with session_scope() as session:
        assert count_by_status(session, Delivery, planned.digest_id) == {"sent": 8}
        sizes = session.scalars(
            select(DeliveryBatch.size).where(DeliveryBatch.id.in_(first.enqueue))
        )
        assert sorted(sizes) == [4, 4]
    assert sendgrid_env.addresses() == Counter(planned.emails)


def test_the_data_export_shows_a_sent_delivery_as_sent(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(1)
    sending.send_batch(planned.batch_ids[0])
    with session_scope() as session:
        subscriber_id = session.scalar(
            select(Subscriber.id).where(Subscriber.email == planned.emails[0])
        )
        exported = export_data(session, subscriber_id)
    assert exported is not None
    assert [d["status"] for d in exported["deliveries"]] == ["sent"]
