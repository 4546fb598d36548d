"""The edition's emails before they go: each preference segment rendered as it would be sent,
with its size against the byte budget (for `digest edition emails`, later the console's
375/640 px preview).

Segments are the ones today's active weekly subscribers would fall into (digest/segments.py
`match_segment`, the planner's own rule), plus "all" (what a test copy gets). Renders go
through the same `render_weekly_segment` as planning, with the edition's overrides; nothing is
written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from digest.edition_overrides import overrides_for
from digest.edition_preview import edition_slot, preview_ranking
from digest.email_budget import filled_size
from digest.plan_items import PlannedItem, categories_of
from digest.segments import ALL, match_segment, render_weekly_segment
from digest.settings import get_settings
from schema.models import Comparison, Subscriber
from schema.statuses import Frequency, SubscriberStatus


@dataclass(frozen=True)
class EmailPreview:
    """One segment's email as it would be sent (recipients' values still placeholders)."""

    key: str
    label: str | None
    subscribers: int  # active weekly subscribers whose categories lead here (before suppressions)
    items: int
    full: int  # comparisons shown in full; the rest compact or only linked (the byte budget)
    subject: str
    preheader: str
    html: str
    text: str
    size: int  # bytes of the HTML part for the longest recipient values
    budget: int  # DIGEST_EMAIL_MAX_BYTES


def _items(session: Session, edition: str, now: datetime) -> list[PlannedItem]:
    preview = preview_ranking(session, edition, now)
    ids = [i.comparison_id for i in preview.items]
    found = {c.id: c for c in session.scalars(select(Comparison).where(Comparison.id.in_(ids)))}
    return [
        PlannedItem(
            i.rank,
            found[i.comparison_id],
            i.score,
            i.explanation,
            categories_of(found[i.comparison_id]),
        )
        for i in preview.items
    ]


def _preferences(session: Session) -> list[tuple[tuple[str, ...], int]]:
    """Distinct category choices of active weekly subscribers, with how many chose each."""
    stored = cast(Subscriber.categories, Text)
    rows = session.execute(
        select(stored, func.count())
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.frequency == Frequency.WEEKLY,
            Subscriber.paused.is_(False),
        )
        .group_by(stored)
    )
    return [(tuple(json.loads(text) or ()) if text else (), count) for text, count in rows]


def preview_emails(session: Session, edition: str, now: datetime) -> list[EmailPreview]:
    """Every segment's email of the edition, "all" first, then by label."""
    slot = edition_slot(session, edition)
    items = _items(session, slot.edition, now)
    if not items:
        return []
    review = overrides_for(session, slot.edition)
    segments: dict[str, tuple[str | None, list[PlannedItem]]] = {ALL: (None, items)}
    counts: dict[str, int] = {ALL: 0}
    for preferences, count in _preferences(session):
        found = match_segment(items, preferences)
        if isinstance(found, str):
            continue  # no item for these categories: they get nothing
        key, label, matched = found
        segments.setdefault(key, (label, matched))
        counts[key] = counts.get(key, 0) + count
    budget = get_settings().email_max_bytes
    previews = []
    for key, (label, matched) in segments.items():
        email = render_weekly_segment(matched, label, review=review)
        previews.append(
            EmailPreview(
                key,
                label,
                counts[key],
                len(matched),
                email.shown.full if email.shown else len(matched),
                email.subject,
                email.preheader,
                email.html,
                email.text,
                filled_size(email.html, email.placeholders),
                budget,
            )
        )
    return sorted(previews, key=lambda p: (p.key != ALL, p.label or ""))
