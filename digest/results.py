"""How one digest did, in full: the one function behind `digest stats` and the console's results
page (`/console/digests/{id}/results`), so the two cannot disagree.

`digest_stats` (digest/stats.py) gives the funnel and its figures, unchanged; beside them come
the clicks per comparison (digest/click_stats.py), the first 48 hours (digest/activity_stats.py)
and readers' verdicts on each comparison (digest/votes.py `tallies_for`: every verdict so far,
whichever digest's link cast it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.activity_stats import ActivitySeries, activity_series
from digest.click_stats import ClickBreakdown, click_breakdown
from digest.records import JsonRecord
from digest.stats import DigestStats, digest_stats
from digest.votes import tallies_for
from schema.models import DigestItem


@dataclass(frozen=True)
class ToolVerdicts(JsonRecord):
    position: int
    name: str
    ship: int
    skip: int
    total: int
    ship_pct: int | None


@dataclass(frozen=True)
class ComparisonVerdicts(JsonRecord):
    rank: int
    comparison_id: int
    slug: str
    title: str
    tools: list[ToolVerdicts]


@dataclass(frozen=True)
class DigestResults(JsonRecord):
    stats: DigestStats
    clicks: ClickBreakdown
    activity: ActivitySeries
    reader_verdicts: list[ComparisonVerdicts]

    def document(self) -> dict[str, Any]:
        """`digest stats --json`: the stats' own document (its keys as they always were) with
        `clicks`, `activity` and `reader_verdicts` after them."""
        return {
            **self.stats.as_dict(),
            "clicks": self.clicks.as_dict(),
            "activity": self.activity.as_dict(),
            "reader_verdicts": [v.as_dict() for v in self.reader_verdicts],
        }


def frozen_items(session: Session, digest_id: int) -> list[DigestItem]:
    """The digest's items in rank order, each with its comparison (joined)."""
    return list(
        session.scalars(
            select(DigestItem).where(DigestItem.digest_id == digest_id).order_by(DigestItem.rank)
        )
    )


def reader_verdicts(session: Session, items: list[DigestItem]) -> list[ComparisonVerdicts]:
    """Each item's readers' verdicts per tool, as `tallies_for` counts them."""
    tallies = tallies_for(session, [i.comparison_id for i in items])
    return [
        ComparisonVerdicts(
            i.rank,
            i.comparison_id,
            i.comparison.slug,
            i.comparison.title,
            [
                ToolVerdicts(position, t.name, t.ship, t.skip, t.total, t.ship_pct)
                for position, t in enumerate(tallies.get(i.comparison_id, []))
            ],
        )
        for i in items
    ]


def digest_results(session: Session, digest_id: int) -> DigestResults:
    """Every figure of one digest; raises LookupError for an unknown id (as `digest_stats`)."""
    stats = digest_stats(session, digest_id)
    items = frozen_items(session, digest_id)
    return DigestResults(
        stats=stats,
        clicks=click_breakdown(session, digest_id, items),
        activity=activity_series(session, digest_id),
        reader_verdicts=reader_verdicts(session, items),
    )
