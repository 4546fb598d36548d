"""Clicks per comparison: which item, where it stood in which segment's email, people and
machines apart — so an operator sees whether readers follow the ranking.

Each click event is matched to one of the digest's frozen items by its URL (digest/item_links.py:
`utm_content`, a vote link's path, or the page's address); clicks on any other link (the
archive, preferences, unsubscribe) are "other links". Its segment is its delivery's batch's. Counts
are click events, human (`machine` false) and machine apart, so every comparison's clicks plus the
other links' add up to all the digest's clicks; beside them, the readers: distinct recipients
(digest/stats.py `recipient_of_event`) with a human click on that comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.item_links import ItemLinks, item_links
from digest.records import JsonRecord
from digest.stats import recipient_of_event
from schema.models import Delivery, DeliveryBatch, DigestItem, DigestSegment, EmailEvent

UNKNOWN_SEGMENT = "unknown"  # a click whose event names no delivery of this digest
ALL = "all"


@dataclass(frozen=True)
class SegmentClicks(JsonRecord):
    """One comparison in one segment's email: its place there and the clicks it had."""

    segment: str  # the segment's key
    label: str
    position: int | None  # 1 = first in that email; None: not in it (or the segment unknown)
    human_clicks: int
    human_readers: int
    machine_clicks: int


@dataclass(frozen=True)
class ComparisonClicks(JsonRecord):
    """One frozen item: its rank in the digest and its clicks, in all and per segment."""

    rank: int
    comparison_id: int
    slug: str
    title: str
    human_clicks: int
    human_readers: int
    machine_clicks: int
    segments: list[SegmentClicks]


@dataclass(frozen=True)
class OtherClicks(JsonRecord):
    """Clicks on links that are no comparison's (archive, preferences, unsubscribe, unknown)."""

    human_clicks: int
    human_readers: int
    machine_clicks: int


@dataclass(frozen=True)
class ClickBreakdown(JsonRecord):
    """All of a digest's click events, split by comparison; the parts add up to the totals."""

    human_clicks: int
    machine_clicks: int
    comparisons: list[ComparisonClicks]
    other_links: OtherClicks


@dataclass
class _Tally:
    human: int = 0
    machine: int = 0
    readers: set[str] = field(default_factory=set)

    def add(self, who: str, machine: bool, events: int) -> None:
        if machine:
            self.machine += events
        else:
            self.human += events
            self.readers.add(who)

    def merge(self, other: _Tally) -> None:
        self.human += other.human
        self.machine += other.machine
        self.readers |= other.readers


@dataclass(frozen=True)
class _Segment:
    key: str
    label: str
    positions: dict[int, int]  # comparison id -> place in this segment's email


def segment_label(key: str, names: dict[str, str]) -> str:
    """What a segment key means to a person: "all readers", or its categories as the items
    spell them (`names`: case-folded -> displayed; the key holds them case-folded)."""
    if key == ALL:
        return "all readers"
    if key.startswith("categories:"):
        folded = key.removeprefix("categories:").split(";")
        return " · ".join(names.get(n, n) for n in folded)
    if key.startswith("categories#"):
        return f"many categories ({key.removeprefix('categories#')[:8]})"
    return key


def _segments(
    session: Session, digest_id: int, links: ItemLinks, names: dict[str, str]
) -> dict[int, _Segment]:
    """The digest's segments, each with where every item stood in its rendered email."""
    rows = session.execute(
        select(DigestSegment.id, DigestSegment.segment_key, DigestSegment.html)
        .where(DigestSegment.digest_id == digest_id)
        .order_by(DigestSegment.id)
    )
    return {
        row_id: _Segment(key, segment_label(key, names), links.positions_in(html))
        for row_id, key, html in rows
    }


def _click_rows(session: Session, digest_id: int) -> Any:
    """The digest's clicks as (segment id, recipient, URL, machine, events): one row per link a
    recipient clicked, judged one way, with how often — not one row per event. The segment is
    the delivery's batch's; NULL when the event names no delivery."""
    who = recipient_of_event()
    return session.execute(
        select(DeliveryBatch.segment_id, who, EmailEvent.url, EmailEvent.machine, func.count())
        .select_from(EmailEvent)
        .outerjoin(Delivery, Delivery.id == EmailEvent.delivery_id)
        .outerjoin(DeliveryBatch, DeliveryBatch.id == Delivery.batch_id)
        .where(EmailEvent.digest_id == digest_id, EmailEvent.event == "click")
        .group_by(DeliveryBatch.segment_id, who, EmailEvent.url, EmailEvent.machine)
    )


def click_breakdown(
    session: Session, digest_id: int, items: Sequence[DigestItem]
) -> ClickBreakdown:
    """Every click of the digest, by comparison and segment, people and machines apart."""
    comparisons = [i.comparison for i in items]
    names = {
        n.casefold(): n
        for c in comparisons
        for n in (c.category, *(t.category for t in c.tools))
        if n
    }
    links = item_links(comparisons)
    segments = _segments(session, digest_id, links, names)
    by_item: dict[int, _Tally] = {i.comparison_id: _Tally() for i in items}
    by_cell: dict[tuple[int, int | None], _Tally] = {}
    other, total = _Tally(), _Tally()
    for segment_id, who, url, machine, events in _click_rows(session, digest_id):
        total.add(who, machine, events)
        item = links.item_of(url)
        if item is None or item not in by_item:
            other.add(who, machine, events)
            continue
        by_item[item].add(who, machine, events)
        by_cell.setdefault((item, segment_id), _Tally()).add(who, machine, events)
    return ClickBreakdown(
        human_clicks=total.human,
        machine_clicks=total.machine,
        comparisons=[_comparison(i, by_item[i.comparison_id], segments, by_cell) for i in items],
        other_links=OtherClicks(other.human, len(other.readers), other.machine),
    )


def _comparison(
    item: DigestItem,
    tally: _Tally,
    segments: dict[int, _Segment],
    by_cell: dict[tuple[int, int | None], _Tally],
) -> ComparisonClicks:
    """One item's row: every segment whose email held it, and any other that had its clicks."""
    cid = item.comparison_id
    shown = [s for s in segments if cid in segments[s].positions or (cid, s) in by_cell]
    cells = [
        _cell(segments[s], segments[s].positions.get(cid), by_cell.get((cid, s))) for s in shown
    ]
    unknown = _Tally()
    for (other_cid, segment_id), cell in by_cell.items():
        if other_cid == cid and segment_id not in segments:
            unknown.merge(cell)
    if unknown.human or unknown.machine:
        cells.append(_cell(_Segment(UNKNOWN_SEGMENT, "segment unknown", {}), None, unknown))
    return ComparisonClicks(
        rank=item.rank,
        comparison_id=cid,
        slug=item.comparison.slug,
        title=item.comparison.title,
        human_clicks=tally.human,
        human_readers=len(tally.readers),
        machine_clicks=tally.machine,
        segments=cells,
    )


def _cell(segment: _Segment, position: int | None, tally: _Tally | None) -> SegmentClicks:
    tally = tally or _Tally()
    return SegmentClicks(
        segment.key, segment.label, position, tally.human, len(tally.readers), tally.machine
    )
