"""Which comparisons a digest may carry: the window, retractions, and what was already mailed.

A weekly digest picks up where the last one that went out (status sending or sent) stopped, so
no published comparison falls between two windows; the first one covers the last 7 days from
the start of that local day in `DIGEST_TIMEZONE`. A comparison mailed in an earlier weekly
digest is not mailed again unless its verdict changed since (its `verdict_fingerprint` differs
from the one frozen into the digest item); such a re-qualified comparison is picked up when its
update falls in the window even if it was first published long before.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from digest.settings import get_settings
from schema.models import Comparison, Digest, DigestItem
from schema.statuses import DigestKind, DigestStatus

MAILED_STATUSES = (DigestStatus.SENDING, DigestStatus.SENT)
FIRST_WINDOW_DAYS = 7


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: give a timezone (UTC is fine)")
    return value.astimezone(UTC)


def weekly_window(session: Session, now: datetime) -> tuple[datetime, datetime]:
    """(since, until): since the window_end of the last weekly Digest whose status is
    sending/sent, else the last 7 days in DIGEST_TIMEZONE (start of that local day)."""
    now = _aware(now)
    last_end = session.scalar(
        select(Digest.window_end)
        .where(
            Digest.kind == DigestKind.WEEKLY,
            Digest.status.in_(MAILED_STATUSES),
            Digest.window_end.is_not(None),
        )
        .order_by(Digest.window_end.desc())
        .limit(1)
    )
    if last_end is not None:
        return min(last_end, now), now
    zone = get_settings().zone
    first_day = now.astimezone(zone).date() - timedelta(days=FIRST_WINDOW_DAYS)
    since = datetime.combine(first_day, time(0), tzinfo=zone).astimezone(UTC)
    return since, now


def last_mailed_fingerprints(session: Session, comparison_ids: list[int]) -> dict[int, str]:
    """The verdict fingerprint each comparison had when a weekly digest last carried it."""
    if not comparison_ids:
        return {}
    rows = session.execute(
        select(DigestItem.comparison_id, DigestItem.verdict_fingerprint)
        .join(Digest, Digest.id == DigestItem.digest_id)
        .where(
            Digest.kind == DigestKind.WEEKLY,
            Digest.status.in_(MAILED_STATUSES),
            DigestItem.comparison_id.in_(comparison_ids),
        )
        .order_by(Digest.created_at.desc(), Digest.id.desc())
    )
    latest: dict[int, str] = {}
    for comparison_id, fingerprint in rows:
        latest.setdefault(comparison_id, fingerprint)
    return latest


def collect_comparisons(
    session: Session, since: datetime, until: datetime, *, kind: str = DigestKind.WEEKLY
) -> list[Comparison]:
    """published in [since, until), not retracted, and (for weekly) not already an item of an
    earlier weekly digest with status sending/sent unless its verdict_fingerprint changed since.

    For weekly digests a comparison updated in the window whose verdict changed since it was
    mailed comes back too. Ordered by publication time, then slug.
    """
    since, until = _aware(since), _aware(until)
    if since > until:
        raise ValueError(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
    published = and_(Comparison.published_at >= since, Comparison.published_at < until)
    window = published
    if kind == DigestKind.WEEKLY:
        updated = and_(Comparison.updated_at >= since, Comparison.updated_at < until)
        window = or_(published, updated)
    candidates = list(
        session.scalars(
            select(Comparison)
            .where(window, Comparison.retracted.is_(False))
            .order_by(Comparison.published_at, Comparison.slug)
        )
    )
    if kind != DigestKind.WEEKLY:
        return candidates
    mailed = last_mailed_fingerprints(session, [c.id for c in candidates])
    chosen = []
    for comparison in candidates:
        fingerprint = mailed.get(comparison.id)
        if fingerprint is None:
            # never mailed: only what was published in the window belongs to it
            if since <= comparison.published_at < until:
                chosen.append(comparison)
        elif fingerprint != comparison.verdict_fingerprint:
            chosen.append(comparison)
    return chosen
