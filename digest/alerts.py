"""The single-comparison alert: a newly published comparison, mailed to `every` subscribers.

Ingest queues `digest.plan_alert(comparison_id)` after it commits a `comparison.published`
event that created a comparison (site events always; file and page imports only with
`digest import --alert`, because an operator's import is a backfill). The alert is an ordinary
digest of kind `alert` with one item and one segment, planned by digest/planning.py and sent
by the same batch tasks; its slot key `alert:{comparison_id}` makes a repeated task a no-op.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from digest.db import session_scope
from digest.planning import PlanReport, plan_digest
from schema.models import Comparison, Digest
from schema.statuses import DigestKind, DigestStatus


def alert_key(comparison_id: int) -> str:
    return f"alert:{comparison_id}"


def plan_alert(comparison_id: int, *, now: datetime | None = None) -> PlanReport | None:
    """Create and plan the alert for one comparison; None if it exists or cannot be sent.

    After this commits, the caller hands `report.batch_ids` to the workers. Subscribers
    whose frequency is `every` and whose categories include the comparison's (or who chose
    none) receive it; everyone else is left out, and the digest records how many.
    """
    now = now or datetime.now(UTC)
    with session_scope() as session:
        comparison = session.get(Comparison, comparison_id)
        if comparison is None or comparison.retracted:
            return None
        key = alert_key(comparison_id)
        if session.scalar(select(Digest.id).where(Digest.slot_key == key)) is not None:
            return None
        savepoint = session.begin_nested()
        digest = Digest(
            kind=DigestKind.ALERT,
            status=DigestStatus.PLANNED,
            slot_key=key,
            window_start=comparison.published_at,
            window_end=now,
            options={"comparison_id": comparison_id},
        )
        session.add(digest)
        try:
            session.flush()
        except IntegrityError:  # a concurrent task created it first
            savepoint.rollback()
            return None
        savepoint.commit()
        return plan_digest(session, digest, now=now)
