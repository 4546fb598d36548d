"""Counting deliveries by status without reading every row (digest/ledger_counts.py).

The counts come from the rows that left `pending` and the batches' sizes. Each test drives a
digest through what can happen to its recipients and checks the counts against the plain
count of every delivery row as `delivery_status` reads it, plus the batches never claimed.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select, update

from digest import operations, sending
from digest.batch_recipients import unclaimed_counts
from digest.db import session_scope
from digest.ledger_counts import count_by_status, counts_by_digest, delivery_status
from schema.models import Delivery, DeliveryBatch, Subscriber
from tests.support.planned_rows import PlannedDigest, plan_rows
from tests.support.sendgrid_server import FakeSendGrid


def plan(recipients: int, batch_size: int, prefix: str = "reader") -> PlannedDigest:
    with session_scope() as session:
        return plan_rows(session, recipients, batch_size=batch_size, prefix=prefix)


def every_row(digest_id: int) -> Counter[str]:
    """The oracle: every delivery row read through its batch, and the unclaimed batches."""
    with session_scope() as session:
        status = delivery_status().label("status")
        found = Counter(
            {
                str(status_): count
                for status_, count in session.execute(
                    select(status, func.count())
                    .select_from(Delivery)
                    .outerjoin(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
                    .where(Delivery.digest_id == digest_id)
                    .group_by(status)
                )
            }
        )
        for _, status_, count in unclaimed_counts(session, [digest_id]):
            found[str(status_)] += int(count)
    return +found


def counted(digest_id: int) -> Counter[str]:
    with session_scope() as session:
        return +count_by_status(session, Delivery, digest_id)


def unsubscribe(email: str) -> None:
    with session_scope() as session:
        session.execute(
            update(Subscriber).where(Subscriber.email == email).values(status="unsubscribed")
        )


def test_counts_match_every_row_through_sends_rejections_leavers_retries_and_a_cancel(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(12, batch_size=3)
    first, second, third, _unclaimed = planned.batch_ids
    sendgrid_env.reject_addresses([planned.emails[1]])
    assert sending.send_batch(first).status == "sent"
    unsubscribe(planned.emails[4])
    assert sending.send_batch(second).status == "sent"
    sendgrid_env.fail_next(429)
    assert sending.send_batch(third).status == "retry"
    expected = {"sent": 4, "failed": 1, "skipped": 1, "pending": 6}
    assert counted(planned.digest_id) == every_row(planned.digest_id) == expected
    with session_scope() as session:
        operations.cancel_digest(session, planned.digest_id)
    expected = {"sent": 4, "failed": 1, "skipped": 1, "cancelled": 6}
    assert counted(planned.digest_id) == every_row(planned.digest_id) == expected


def test_counts_match_every_row_through_a_split_and_an_operators_decision(
    sendgrid_env: FakeSendGrid,
) -> None:
    planned = plan(8, batch_size=4)
    first, second = planned.batch_ids
    sendgrid_env.fail_next(413)
    halves = sending.send_batch(first).enqueue
    assert [sending.send_batch(half).status for half in halves] == ["sent", "sent"]
    sendgrid_env.stall_next(2.0)  # past the client's timeout: the batch is ambiguous
    assert sending.send_batch(second).status == "ambiguous"
    assert counted(planned.digest_id) == every_row(planned.digest_id) == {"sent": 4, "pending": 4}
    with session_scope() as session:
        operations.resend_ambiguous(session, "mark-sent", digest_id=planned.digest_id)
    assert counted(planned.digest_id) == every_row(planned.digest_id) == {"sent": 8}


def test_counts_of_several_digests_are_each_their_own(sendgrid_env: FakeSendGrid) -> None:
    one = plan(3, batch_size=3)
    other = plan(2, batch_size=2, prefix="other")
    sendgrid_env.fail_next(422)
    assert sending.send_batch(one.batch_ids[0]).status == "failed"
    with session_scope() as session:
        counts = counts_by_digest(session, Delivery, [one.digest_id, other.digest_id])
    assert (counts[one.digest_id], counts[other.digest_id]) == ({"failed": 3}, {"pending": 2})


def test_on_sqlite_counts_match_every_row(sqlite: str) -> None:
    planned = plan(6, batch_size=3)
    unsubscribe(planned.emails[0])
    assert sending.send_batch(planned.batch_ids[0]).status == "sent"
    assert counted(planned.digest_id) == every_row(planned.digest_id)
    assert counted(planned.digest_id) == {"sent": 2, "skipped": 1, "pending": 3}
