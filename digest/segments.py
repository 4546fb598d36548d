"""Preference segments: each rendered once, on its first subscriber, or inherited from the edition.

A subscriber's segment is the part of their categories that this digest's items cover ("all"
when they chose none, or when their choice covers every item). A segment whose categories match
no item gets nothing; the caller counts who that left out, by the segment's label.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from digest.edition_overrides import EditionOverrides
from digest.plan_items import PlannedItem
from digest.rendering import Entry, render_alert, render_weekly
from schema.models import Digest, DigestSegment
from schema.statuses import DigestKind

ALL = "all"
SEGMENT_KEY_MAX = 300
TEST_PREFIX = "[Test] "

# Renders the items a segment matched, under its label (None for "all").
Renderer = Callable[[list[PlannedItem], str | None], Any]


@dataclass
class SegmentPlan:
    key: str
    label: str | None
    items: int
    recipients: int = 0
    batches: int = 0
    rendered: bool = False  # False: reused from the edition's first wave


@dataclass
class OpenSegment:
    """A segment while recipients stream past: its row id and its open batch's buffer."""

    plan: SegmentPlan
    id: int | None
    buffer: list[int] = field(default_factory=list)  # subscriber ids of the open batch


@dataclass
class _Content:
    subject: str
    html: str
    text: str
    preheader: str | None
    nonce: str | None
    rendered: bool


def segment_key(names: list[str]) -> str:
    key = "categories:" + ";".join(sorted(n.casefold() for n in names))
    if len(key) > SEGMENT_KEY_MAX:
        key = "categories#" + hashlib.sha256(key.encode()).hexdigest()
    return key


def render_weekly_segment(
    matched: list[PlannedItem],
    label: str | None,
    *,
    archive_url: str | None = None,
    review: EditionOverrides | None = None,
) -> Any:
    """One segment's weekly email, with the edition's note, subject and preheader if reviewed."""
    entries = [Entry(n, i.comparison, i.explanation) for n, i in enumerate(matched, start=1)]
    review = review or EditionOverrides()
    return render_weekly(
        entries,
        segment_label=label,
        archive_url=archive_url,
        note=review.note,
        subject=review.subject,
        preheader=review.preheader,
    )


def render_alert_segment(
    matched: list[PlannedItem],
    label: str | None,
    *,
    archive_url: str | None = None,
    review: EditionOverrides | None = None,  # alerts are not reviewed
) -> Any:
    return render_alert(matched[0].comparison, matched[0].explanation, archive_url=archive_url)


def display_names(items: list[PlannedItem]) -> dict[str, str]:
    """Case-folded category -> its name as the items spell it."""
    return {
        n.casefold(): n
        for i in items
        for n in (i.comparison.category, *(t.category for t in i.comparison.tools))
        if n
    }


def match_segment(
    items: list[PlannedItem],
    preferences: tuple[str, ...],
    display: dict[str, str] | None = None,
    all_categories: frozenset[str] | None = None,
) -> tuple[str, str | None, list[PlannedItem]] | str:
    """(key, label, matched items) of a subscriber's categories, or the label of a segment no
    item matches. Shared by planning and the edition's email previews."""
    display = display if display is not None else display_names(items)
    if all_categories is None:
        all_categories = frozenset().union(*(i.categories for i in items))
    wanted = {p.casefold() for p in preferences if p}
    matched = [i for i in items if not wanted or i.categories & wanted]
    if not matched:
        return " · ".join(sorted(p for p in preferences if p)) or ALL
    if len(matched) == len(items):
        return ALL, None, matched
    names = sorted(display[c] for c in wanted & all_categories)
    return segment_key(names), " · ".join(names), matched


class Segments:
    """One digest's segments, keyed by the preferences that lead to them."""

    def __init__(
        self,
        session: Session,
        digest: Digest,
        items: list[PlannedItem],
        *,
        renderer: Renderer,
        inherited: dict[str, DigestSegment],
    ) -> None:
        self.session, self.digest, self.items = session, digest, items
        self.renderer = renderer
        self.inherited = inherited  # renders of an earlier wave of the same edition, by key
        self.all_categories = frozenset().union(*(i.categories for i in items))
        self.display = display_names(items)
        self.by_preferences: dict[tuple[str, ...], OpenSegment | str] = {}
        self.open: dict[str, OpenSegment] = {}
        self.renders = 0

    def segment_for(self, preferences: tuple[str, ...]) -> OpenSegment | str:
        """The segment of a subscriber's categories, or the label of a segment with no items."""
        found = self.by_preferences.get(preferences)
        if found is None:
            found = self._segment(preferences)
            self.by_preferences[preferences] = found
        return found

    def _segment(self, preferences: tuple[str, ...]) -> OpenSegment | str:
        found = match_segment(self.items, preferences, self.display, self.all_categories)
        if isinstance(found, str):
            return found
        key, label, matched = found
        segment = self.open.get(key)
        if segment is None:
            segment = self._new_segment(key, label, matched)
            self.open[key] = segment
        return segment

    def _content(self, key: str, label: str | None, matched: list[PlannedItem]) -> _Content:
        """The edition's render of this key if an earlier wave made one, else a new render."""
        inherited = self.inherited.get(key)
        if inherited is not None:
            return _Content(
                inherited.subject,
                inherited.html,
                inherited.text,
                self.digest.preheader,
                inherited.placeholder_nonce,
                rendered=False,
            )
        email = self.renderer(matched, label)
        self.renders += 1
        subject = (self.digest.options or {}).get("subject") or email.subject
        if self.digest.kind == DigestKind.TEST:
            subject = TEST_PREFIX + subject
        nonce = email.placeholders.nonce if email.placeholders else None
        return _Content(subject, email.html, email.text, email.preheader, nonce, rendered=True)

    def _new_segment(self, key: str, label: str | None, matched: list[PlannedItem]) -> OpenSegment:
        content = self._content(key, label, matched)
        if self.digest.subject is None or key == ALL:
            self.digest.subject = content.subject[:300]
            self.digest.preheader = (content.preheader or "")[:300]
        row = DigestSegment(
            digest_id=self.digest.id,
            segment_key=key,
            subject=content.subject[:300],
            html=content.html,
            text=content.text,
            placeholder_nonce=content.nonce,
        )
        self.session.add(row)
        self.session.flush()
        plan = SegmentPlan(key, label, len(matched), rendered=content.rendered)
        return OpenSegment(plan, row.id)

    def record_recipients(self) -> None:
        """Each segment row's recipient count, once every batch is flushed."""
        for segment in self.open.values():
            self.session.execute(
                DigestSegment.__table__.update()
                .where(DigestSegment.id == segment.id)
                .values(recipients=segment.plan.recipients)
            )
