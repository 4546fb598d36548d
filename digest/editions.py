"""The waves of one weekly edition: the one query that finds them, and what planning reads off them.

All timezone waves of one weekly slot (the same local date and time) are one edition
(digest/schedule.py). The first wave to fire collects and ranks the items; later waves copy its
items and renders and skip subscribers an earlier wave already reached. Each wave's digest
carries its edition in `digests.edition` (set by digest/weekly.py), so finding the others is a
plain equality on an indexed column, not a parse of the slot key.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.batch_recipients import unclaimed_between
from schema.models import Delivery, Digest, DigestSegment
from schema.statuses import DigestKind


def other_waves(session: Session, digest: Digest) -> list[Digest]:
    """The other waves of this digest's weekly edition, first fired first (empty for any other
    digest)."""
    if digest.kind != DigestKind.WEEKLY or not digest.edition:
        return []
    return list(
        session.scalars(
            select(Digest)
            .where(
                Digest.kind == DigestKind.WEEKLY,
                Digest.edition == digest.edition,
                Digest.id != digest.id,
            )
            .order_by(Digest.id)
        )
    )


def edition_renders(session: Session, waves: list[Digest]) -> dict[str, DigestSegment]:
    """Every segment these waves rendered, by key (the earliest render of a key wins)."""
    if not waves:
        return {}
    rows = session.scalars(
        select(DigestSegment)
        .where(DigestSegment.digest_id.in_([wave.id for wave in waves]))
        .order_by(DigestSegment.id.desc())
    )
    return {row.segment_key: row for row in rows}


def mailed_in(session: Session, digest_ids: list[int], first: int, last: int) -> set[int]:
    """Subscribers in [first, last] who have a delivery of one of these digests, or are
    planned in one of their batches not yet claimed."""
    written = set(
        session.scalars(
            select(Delivery.subscriber_id).where(
                Delivery.digest_id.in_(digest_ids),
                Delivery.subscriber_id.between(first, last),
            )
        )
    )
    return written | unclaimed_between(session, digest_ids, first, last)
