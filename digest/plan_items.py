"""A digest's items: chosen, ranked and frozen as `digest_items` before anything is rendered.

A weekly wave collects the window's comparisons (digest/collect.py) and ranks them
(digest/ranking.py); a later wave of the same edition copies the first wave's items and window
instead, so every timezone reads the same email. A weekly edition's (and its test copy's)
ranking then follows the operator's pins and exclusions (digest/edition_overrides.py); an
alert carries its one comparison; an ad hoc digest may be limited to some categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.collect import collect_comparisons, weekly_window
from digest.edition_overrides import EditionOverrides, apply_overrides
from digest.ranking import RankedComparison, rank_comparisons
from digest.votes import reader_counts
from schema.models import Comparison, Digest, DigestItem
from schema.statuses import DigestKind


@dataclass
class PlannedItem:
    """One frozen item, with the case-folded categories segments are matched against."""

    rank: int
    comparison: Comparison
    score: float
    explanation: str
    categories: frozenset[str]  # case-folded


def categories_of(comparison: Comparison) -> frozenset[str]:
    """The comparison's own category and its tools', case-folded."""
    names = {comparison.category, *(t.category for t in comparison.tools)}
    return frozenset(n.casefold() for n in names if n)


def _freeze(session: Session, digest: Digest, ranked: list[RankedComparison]) -> list[PlannedItem]:
    items = []
    for rank, entry in enumerate(ranked, start=1):
        comparison = entry.comparison
        session.add(
            DigestItem(
                digest_id=digest.id,
                comparison_id=comparison.id,
                rank=rank,
                score=entry.score,
                explanation=entry.explanation,
                verdict_fingerprint=comparison.verdict_fingerprint,
            )
        )
        items.append(
            PlannedItem(rank, comparison, entry.score, entry.explanation, categories_of(comparison))
        )
    session.flush()
    return items


def collect_items(
    session: Session,
    digest: Digest,
    now: datetime,
    overrides: EditionOverrides | None = None,
) -> list[PlannedItem]:
    """Choose, rank and freeze the digest's comparisons (a weekly edition's, or a test copy of
    one, in the order its `overrides` say)."""
    options = digest.options or {}
    if digest.kind == DigestKind.ALERT:
        comparison = session.get(Comparison, options["comparison_id"])
        chosen = [comparison] if comparison is not None and not comparison.retracted else []
    elif digest.kind == DigestKind.WEEKLY:
        until = digest.window_end or now
        since, _ = weekly_window(session, until)
        digest.window_start, digest.window_end = since, until
        chosen = collect_comparisons(session, since, until, kind=DigestKind.WEEKLY)
    elif options.get("edition"):  # a test copy of a weekly edition: what its wave would pick
        chosen = collect_comparisons(
            session, digest.window_start, digest.window_end, kind=DigestKind.WEEKLY
        )
    else:
        chosen = collect_comparisons(
            session, digest.window_start, digest.window_end, kind=DigestKind.ADHOC
        )
        wanted = {c.casefold() for c in options.get("segments") or []}
        if wanted:
            chosen = [c for c in chosen if categories_of(c) & wanted]
    ranked = rank_comparisons(chosen, readers=reader_counts(session, chosen))
    if overrides is not None:
        ranked = apply_overrides(ranked, overrides)
    return _freeze(session, digest, ranked)


def copy_items(session: Session, digest: Digest, leader: Digest) -> list[PlannedItem]:
    """The edition's first wave's items and window, frozen again for this wave."""
    digest.window_start, digest.window_end = leader.window_start, leader.window_end
    rows = session.scalars(
        select(DigestItem).where(DigestItem.digest_id == leader.id).order_by(DigestItem.rank)
    ).all()
    for row in rows:
        session.add(
            DigestItem(
                digest_id=digest.id,
                comparison_id=row.comparison_id,
                rank=row.rank,
                score=row.score,
                explanation=row.explanation,
                verdict_fingerprint=row.verdict_fingerprint,
            )
        )
    session.flush()
    return [
        PlannedItem(r.rank, r.comparison, r.score, r.explanation, categories_of(r.comparison))
        for r in rows
    ]
