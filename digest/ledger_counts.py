"""Counting a digest's batches and deliveries by status: the one function every reader shares.

Sending (to decide whether a digest is finished), operations (`digest status`), stats and the
console all ask "how many of this digest's rows are in each status"; they ask it here, so their
figures cannot drift apart.

A delivery's status is its own once something happened to that one recipient (failed, skipped,
cancelled, or settled by an operator); while it is `pending`, a `sent` batch means it was sent
(`delivery_status`). The 202 is written on the batch row alone: marking its thousand delivery
rows as well was a million row updates per million recipients, the largest part of
PostgreSQL's work while sending (README, Benchmarks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from digest.batch_recipients import unclaimed, unclaimed_counts
from schema.models import Delivery, DeliveryBatch
from schema.statuses import BatchStatus, DeliveryStatus

Ledger = type[DeliveryBatch] | type[Delivery]


def delivery_status() -> Any:
    """A delivery's status as every reader sees it (a column expression; the query must join
    the delivery's batch, `DeliveryBatch.id == Delivery.batch_id`): a pending delivery of a
    sent batch was sent."""
    return case(
        (
            and_(
                Delivery.status == DeliveryStatus.PENDING, DeliveryBatch.status == BatchStatus.SENT
            ),
            DeliveryStatus.SENT.value,
        ),
        else_=Delivery.status,
    )


def count_by_status(session: Session, model: Ledger, digest_id: int) -> Counter[str]:
    """{status: rows} of one digest's batches or deliveries (absent statuses count 0)."""
    return counts_by_digest(session, model, [digest_id])[digest_id]


def counts_by_digest(
    session: Session, model: Ledger, digest_ids: Sequence[int]
) -> dict[int, Counter[str]]:
    """`count_by_status` for several digests in a few grouped queries (lists of digests)."""
    found: dict[int, Counter[str]] = {digest_id: Counter() for digest_id in digest_ids}
    if not digest_ids:
        return found
    if model is Delivery:
        return _delivery_counts(session, list(digest_ids), found)
    rows = session.execute(
        select(model.digest_id, model.status, func.count())
        .where(model.digest_id.in_(list(digest_ids)))
        .group_by(model.digest_id, model.status)
    ).all()
    for digest_id, status, count in rows:
        found[digest_id][str(status)] += count
    return found


def _delivery_counts(
    session: Session, digest_ids: list[int], found: dict[int, Counter[str]]
) -> dict[int, Counter[str]]:
    """Deliveries by status as `delivery_status` reads them, without reading every row.

    A claimed batch's rows are its `size` (its claim wrote one per planned recipient; a 413
    split moves rows and size together), and a row leaves `pending` only when something
    happened to that one recipient. So: the rows that left `pending`, through their partial
    index (`ix_deliveries_exceptions`, empty for a digest that went well), and for each
    claimed batch the rest of its size, read through the batch's status. Counting every row
    took 0.38 s for a digest of a million, on every poll of the console's progress and
    dashboard (README, Benchmarks); tested equal to the count of every row
    (tests/dispatch/test_ledger_counts.py)."""
    left_pending: Counter[int] = Counter()
    for digest_id, batch_id, status, count in session.execute(
        select(Delivery.digest_id, Delivery.batch_id, Delivery.status, func.count())
        .where(Delivery.digest_id.in_(digest_ids), Delivery.status != DeliveryStatus.PENDING)
        .group_by(Delivery.digest_id, Delivery.batch_id, Delivery.status)
    ):
        found[digest_id][str(status)] += count
        left_pending[batch_id] += count
    for batch_id, digest_id, batch_status, size in session.execute(
        select(
            DeliveryBatch.id, DeliveryBatch.digest_id, DeliveryBatch.status, DeliveryBatch.size
        ).where(DeliveryBatch.digest_id.in_(digest_ids), ~unclaimed())
    ):
        rest = size - left_pending[batch_id]
        if rest > 0:
            read_as = (
                DeliveryStatus.SENT if batch_status == BatchStatus.SENT else DeliveryStatus.PENDING
            )
            found[digest_id][read_as.value] += rest
    for digest_id, status, count in unclaimed_counts(session, digest_ids):
        found[digest_id][str(status)] += int(count)
    return found
