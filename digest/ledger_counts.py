"""Counting a digest's batches and deliveries by status: the one query every reader shares.

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

from digest.batch_recipients import unclaimed_counts
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


def _status_column(model: Ledger) -> Any:
    return delivery_status() if model is Delivery else model.status


def _from(model: Ledger, query: Any) -> Any:
    if model is Delivery:
        return query.outerjoin(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
    return query


def count_by_status(session: Session, model: Ledger, digest_id: int) -> Counter[str]:
    """{status: rows} of one digest's batches or deliveries (absent statuses count 0)."""
    return counts_by_digest(session, model, [digest_id])[digest_id]


def counts_by_digest(
    session: Session, model: Ledger, digest_ids: Sequence[int]
) -> dict[int, Counter[str]]:
    """`count_by_status` for several digests in one query (lists of digests)."""
    found: dict[int, Counter[str]] = {digest_id: Counter() for digest_id in digest_ids}
    if digest_ids:
        status = _status_column(model).label("status")
        rows = session.execute(
            _from(model, select(model.digest_id, status, func.count()).select_from(model))
            .where(model.digest_id.in_(list(digest_ids)))
            .group_by(model.digest_id, status)
        ).all()
        for digest_id, status_, count in rows:
            found[digest_id][str(status_)] += count
        if model is Delivery:  # recipients of batches not yet claimed
            for digest_id, status_, count in unclaimed_counts(session, digest_ids):
                found[digest_id][str(status_)] += int(count)
    return found
