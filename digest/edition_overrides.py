"""An edition's overrides as planning reads them: pins, exclusions, note, subject, preheader.

The operator edits them through digest/edition_review.py (CLI, later the console); the edition's
first wave freezes a copy in its `options["review"]` when it is planned, and every later wave,
and every segment rendered for any wave, reads that frozen copy — so one edition is one email
whatever the operator does after the first wave fired. A test copy freezes its own copy when it
is requested. This module only reads the table and applies the overrides to a ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from digest.ranking import RankedComparison
from schema.models import Digest, EditionReview

OPTIONS_KEY = "review"


@dataclass(frozen=True)
class EditionOverrides:
    """What an operator changed in one edition; the empty default changes nothing."""

    pinned: tuple[int, ...] = ()  # comparison ids, in pin order
    excluded: frozenset[int] = field(default_factory=frozenset)
    note: str | None = None
    subject: str | None = None
    preheader: str | None = None

    def as_options(self) -> dict[str, Any]:
        """JSON-safe, for a digest's `options["review"]`."""
        return {
            "pinned": list(self.pinned),
            "excluded": sorted(self.excluded),
            "note": self.note,
            "subject": self.subject,
            "preheader": self.preheader,
        }

    @classmethod
    def from_options(cls, data: dict[str, Any]) -> EditionOverrides:
        return cls(
            pinned=tuple(int(i) for i in data.get("pinned") or ()),
            excluded=frozenset(int(i) for i in data.get("excluded") or ()),
            note=data.get("note"),
            subject=data.get("subject"),
            preheader=data.get("preheader"),
        )

    @classmethod
    def from_row(cls, row: EditionReview | None) -> EditionOverrides:
        if row is None:
            return cls()
        return cls(
            pinned=tuple(row.pinned or ()),
            excluded=frozenset(row.excluded or ()),
            note=row.note,
            subject=row.subject,
            preheader=row.preheader,
        )


def overrides_for(session: Session, edition: str | None, *, lock: bool = False) -> EditionOverrides:
    """The edition's overrides as stored now (empty when nobody reviewed it).

    The first wave reads them with `lock`: an operator's edit (which locks the row too) then
    either lands before the wave is planned, or waits and finds the edition fired.
    """
    if not edition:
        return EditionOverrides()
    return EditionOverrides.from_row(session.get(EditionReview, edition, with_for_update=lock))


def is_approved(session: Session, edition: str, *, lock: bool = False) -> bool:
    """Whether someone approved the edition; beat asks with `lock`, so the approval cannot be
    withdrawn by an edit between this answer and the wave's plan."""
    row = session.get(EditionReview, edition, with_for_update=lock)
    return row is not None and row.approved_at is not None


def frozen_overrides(digest: Digest) -> EditionOverrides | None:
    """The copy a digest froze when it was planned or requested, if any."""
    data = (digest.options or {}).get(OPTIONS_KEY)
    return EditionOverrides.from_options(data) if isinstance(data, dict) else None


def freeze(digest: Digest, overrides: EditionOverrides) -> None:
    """Keep the overrides this digest is planned with, for its later waves (and the record)."""
    digest.options = {**(digest.options or {}), OPTIONS_KEY: overrides.as_options()}


def apply_overrides(
    ranked: list[RankedComparison], overrides: EditionOverrides
) -> list[RankedComparison]:
    """Excluded comparisons dropped; pinned ones first, in pin order; the rest keep their rank.

    A pin or exclusion of a comparison that is not in the ranking (retracted since, or outside
    the window) changes nothing.
    """
    kept = [r for r in ranked if r.comparison.id not in overrides.excluded]
    by_id = {r.comparison.id: r for r in kept}
    pinned = [by_id[i] for i in overrides.pinned if i in by_id]
    pinned_ids = {r.comparison.id for r in pinned}
    return pinned + [r for r in kept if r.comparison.id not in pinned_ids]
