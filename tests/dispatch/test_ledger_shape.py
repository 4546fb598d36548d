"""The ledger's shape. Planning stores a batch's recipients as its subscriber ids; the batch's
first claim writes their delivery rows. After a 202 the batch row records it; its deliveries
read as sent without being rewritten; what happened to one recipient (failed, skipped) stays on
that recipient's row. Recipients of a batch not yet claimed are still counted and found."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select, update

from digest import operations, sending
from digest.data_export import export_data
from digest.db import session_scope
from digest.ledger_counts import count_by_status, counts_by_digest
from digest.ledger_lookup import deliveries_to_subscriber, find_recipient
from schema.models import Delivery, DeliveryBatch, Subscriber
from tests.support.planned_rows import PlannedDigest, plan_rows
from tests.support.sendgrid_server import FakeSendGrid


def plan(recipients: int, batch_size: int = 1000) -> PlannedDigest:
    with session_scope() as session:
        return plan_rows(session, recipients, batch_size=batch_size)


def raw_statuses(digest_id: int) -> Counter[str]:
    with session_scope() as session:
        return Counter(
            session.scalars(select(Delivery.status).where(Delivery.digest_id == digest_id))
        )


def subscriber_id_of(email: str) -> int:
    with session_scope() as session:
        found = session.scalar(select(Subscriber.id).where(Subscriber.email == email))
    assert found is not None
    return found


def planned_ids(batch_id: int) -> list[int] | None:
    with session_scope() as session:
        return session.scalar(
            select(DeliveryBatch.subscriber_ids).where(DeliveryBatch.id == batch_id)
        )


def test_a_planned_batch_holds_its_recipients_as_ids_and_has_no_rows(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(3)
    assert planned_ids(planned.batch_ids[0]) == [subscriber_id_of(e) for e in planned.emails]
    assert raw_statuses(planned.digest_id) == {}


def test_the_first_claim_writes_the_batchs_rows_in_planned_order(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(3)
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    with session_scope() as session:
        rows = session.execute(
            select(Delivery.batch_id, Delivery.subscriber_id, Delivery.email)
            .where(Delivery.digest_id == planned.digest_id)
            .order_by(Delivery.id)
        ).all()
    assert [tuple(row) for row in rows] == [
        (planned.batch_ids[0], subscriber_id_of(email), email) for email in planned.emails
    ]


def test_a_retried_batch_sends_the_rows_its_first_claim_wrote(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(3)
    sendgrid_env.fail_next(429)
    assert sending.send_batch(planned.batch_ids[0]).status == "retry"
    assert raw_statuses(planned.digest_id) == {"pending": 3}
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    assert raw_statuses(planned.digest_id) == {"pending": 3}  # written once, read as sent
    assert sendgrid_env.addresses() == Counter(planned.emails)


def test_cancelling_unclaimed_batches_counts_their_recipients_cancelled(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(5)
    with session_scope() as session:
        cancelled = operations.cancel_digest(session, planned.digest_id)
    assert cancelled.deliveries_cancelled == 5
    with session_scope() as session:
        assert count_by_status(session, Delivery, planned.digest_id) == {"cancelled": 5}


def test_the_ledger_search_finds_a_recipient_of_an_unclaimed_batch_as_pending(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(2)
    with session_scope() as session:
        (trace,) = find_recipient(session, planned.digest_id, planned.emails[1].upper())
    assert (trace.delivery_id, trace.status, trace.batch_id) == (
        None,
        "pending",
        planned.batch_ids[0],
    )
    assert trace.email == planned.emails[1]


def test_the_subscriber_page_lists_a_digest_planned_for_them(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(2)
    with session_scope() as session:
        (planned_for,) = deliveries_to_subscriber(session, subscriber_id_of(planned.emails[0]))
    assert (planned_for.digest_id, planned_for.status, planned_for.batch_status) == (
        planned.digest_id,
        "pending",
        "pending",
    )


def test_the_data_export_lists_a_digest_planned_for_them(sendgrid_env: FakeSendGrid) -> None:
    planned = plan(2)
    with session_scope() as session:
        exported = export_data(session, subscriber_id_of(planned.emails[1]))
    assert exported is not None
    assert [(d["digest_id"], d["status"], d["sent_to"]) for d in exported["deliveries"]] == [
        (planned.digest_id, "pending", planned.emails[1])
    ]


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


def test_a_split_half_holds_the_ids_it_took_and_its_parents_claims(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(6)
    sendgrid_env.fail_next(413)
    _, half = sending.send_batch(planned.batch_ids[0]).enqueue
    with session_scope() as session:
        attempts, moved = session.execute(
            select(DeliveryBatch.attempts, DeliveryBatch.subscriber_ids).where(
                DeliveryBatch.id == half
            )
        ).one()
        rows = session.scalars(
            select(Delivery.subscriber_id).where(Delivery.batch_id == half)
        ).all()
    assert attempts == 1  # its parent's one claim; a first claim of it writes no rows again
    assert moved == sorted(rows) == [subscriber_id_of(e) for e in planned.emails[3:]]


def test_a_batch_that_failed_settles_its_own_rows_and_not_its_neighbours(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(6, batch_size=3)
    first, second = planned.batch_ids
    sendgrid_env.fail_next(429)
    assert sending.send_batch(second).status == "retry"  # its rows are written
    sendgrid_env.fail_next(422)
    assert sending.send_batch(first).status == "failed"
    with session_scope() as session:
        by_batch = Counter(
            session.execute(
                select(Delivery.batch_id, Delivery.status).where(
                    Delivery.digest_id == planned.digest_id
                )
            ).all()
        )
    assert by_batch == {(first, "failed"): 3, (second, "pending"): 3}


def test_a_batch_planned_before_arrays_is_settled_through_its_digests_rows(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(4)
    batch_id = planned.batch_ids[0]
    sendgrid_env.fail_next(429)
    assert sending.send_batch(batch_id).status == "retry"
    with session_scope() as session:  # as migration 0014 left the batches it found
        session.execute(
            update(DeliveryBatch).where(DeliveryBatch.id == batch_id).values(subscriber_ids=None)
        )
    with session_scope() as session:
        cancelled = operations.cancel_digest(session, planned.digest_id)
    assert cancelled.deliveries_cancelled == 4
    assert raw_statuses(planned.digest_id) == {"cancelled": 4}


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


def test_on_sqlite_an_unclaimed_batchs_recipients_are_counted_and_found(sqlite: str) -> None:
    planned = plan(3)
    subscriber_id = subscriber_id_of(planned.emails[2])
    with session_scope() as session:
        assert count_by_status(session, Delivery, planned.digest_id) == {"pending": 3}
        (trace,) = find_recipient(session, planned.digest_id, planned.emails[2])
        (planned_for,) = deliveries_to_subscriber(session, subscriber_id)
    assert (trace.delivery_id, trace.status) == (None, "pending")
    assert (planned_for.digest_id, planned_for.status) == (planned.digest_id, "pending")
