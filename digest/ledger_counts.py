"""Counting a digest's batches and deliveries by status: the one query every reader shares.

Sending (to decide whether a digest is finished), operations (`digest status`), stats and the
console all ask "how many of this digest's rows are in each status"; they ask it here, so their
figures cannot drift apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schema.models import Delivery, DeliveryBatch

Ledger = type[DeliveryBatch] | type[Delivery]


def count_by_status(session: Session, model: Ledger, digest_id: int) -> Counter[str]:
    """{status: rows} of one digest's batches or deliveries (absent statuses count 0)."""
    rows = session.execute(
        select(model.status, func.count())
        .where(model.digest_id == digest_id)
        .group_by(model.status)
    ).all()
    return Counter({status: count for status, count in rows})


def counts_by_digest(
    session: Session, model: Ledger, digest_ids: Sequence[int]
) -> dict[int, Counter[str]]:
    """`count_by_status` for several digests in one query (lists of digests)."""
    found: dict[int, Counter[str]] = {digest_id: Counter() for digest_id in digest_ids}
    if digest_ids:
        rows = session.execute(
            select(model.digest_id, model.status, func.count())
            .where(model.digest_id.in_(list(digest_ids)))
            .group_by(model.digest_id, model.status)
        ).all()
        for digest_id, status, count in rows:
            found[digest_id][status] = count
    return found
