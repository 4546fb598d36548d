"""Reviewing the week's edition before it goes: pin, exclude, restore, note, subject, preheader,
approve, and a test copy of exactly what will be sent.

The overrides live in `edition_reviews`, one row per edition (digest/edition_overrides.py says
how planning reads them). Every mutating function takes the `actor` (e.g. "cli", or an
operator's address in the console), validates its input with an `EditionError` naming the field
and changing nothing, and returns a `Change` saying what changed — the one place an audit log
hooks in. Once any wave of the edition has fired, the edition is frozen (its first wave keeps a
copy of the overrides) and changes are refused. A change after approval withdraws the approval:
what was approved is what goes.

With `DIGEST_WEEKLY_APPROVAL=required`, digest/weekly.py fires no wave of an unapproved edition;
approving it while its slot is within `DIGEST_WEEKLY_GRACE_HOURS` lets the next tick fire it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest import audit
from digest.edition_overrides import EditionOverrides, freeze
from digest.edition_preview import (
    EditionError,
    EditionPreview,
    EditionSlot,
    edition_candidates,
    edition_slot,
    fired_editions,
    next_edition,
    parse_edition,
    preview_ranking,
    preview_window,
)
from digest.plan_requests import PlanError, request_digest
from digest.rendering import PREHEADER_MAX, SUBJECT_MAX
from digest.settings import get_settings
from schema.models import Comparison, EditionReview

__all__ = [
    "Change",
    "EditionError",
    "EditionPreview",
    "EditionSlot",
    "ReviewState",
    "TestCopy",
    "approve",
    "exclude",
    "next_edition",
    "pin",
    "preview_ranking",
    "request_test_copy",
    "restore",
    "review_state",
    "set_note",
    "set_preheader",
    "set_subject",
]

NOTE_MAX = 2000  # characters: a few short paragraphs, well inside the email's byte budget
ACTOR_MAX = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # any control character but \t and \n
_LINE_BREAK = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


@dataclass(frozen=True)
class Change:
    """What one action changed: the audit log's entry, and what the CLI prints."""

    edition: str
    actor: str
    action: str  # pin | exclude | restore | note | subject | preheader | approve
    target: str | None  # the comparison's slug, for pin/exclude/restore
    before: Any
    after: Any
    approval_withdrawn: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after


def record_change(session: Session, change: Change) -> None:
    """Write a change to the audit log (who, what, when, target): the CLI and the console both."""
    if change.changed:
        target = f"{change.edition} {change.target}" if change.target else change.edition
        detail = "approval withdrawn" if change.approval_withdrawn else None
        audit.record(session, change.actor, f"edition.{change.action}", target, detail)


@dataclass(frozen=True)
class ReviewState:
    """Where an edition stands: what the operator set, and whether it will go."""

    edition: str
    state: str  # open | waiting for approval | approved | fired | missed
    approval_required: bool
    first_slot: datetime
    last_slot: datetime
    pinned: list[str]  # slugs, in pin order
    excluded: list[str]
    note: str | None
    subject: str | None
    preheader: str | None
    approved_by: str | None
    approved_at: datetime | None
    updated_by: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class TestCopy:
    """A requested test copy: plan digest `digest_id` (the CLI or a worker) to send it."""

    edition: str
    digest_id: int
    to: str
    items: int
    actor: str  # who asked, for the audit log


# --- validation -------------------------------------------------------------------------------


def _actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor.strip() or _LINE_BREAK.search(actor):
        raise EditionError("actor", "say who acts, on one line")
    if len(actor) > ACTOR_MAX:
        raise EditionError("actor", f"longer than {ACTOR_MAX} characters")
    return actor.strip()


def _one_line(value: str | None, field: str, limit: int) -> str | None:
    """A header-safe line (None or blank clears the override); CR/LF is refused, not mended."""
    if value is None or not value.strip():
        return None
    if _LINE_BREAK.search(value) or _CONTROL.search(value):
        raise EditionError(field, "must be one line, without CR/LF or control characters")
    value = " ".join(value.split())
    if len(value) > limit:
        raise EditionError(field, f"{len(value)} characters; at most {limit}")
    return value


def _note(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if _CONTROL.search(text):
        raise EditionError("note", "contains control characters")
    if len(text) > NOTE_MAX:
        raise EditionError("note", f"{len(text)} characters; at most {NOTE_MAX}")
    return text


def _comparison(
    session: Session, edition: str, slug: str, now: datetime, *, in_edition: bool
) -> Comparison:
    """A comparison by slug; with `in_edition`, one the edition would collect now."""
    slug = (slug or "").strip()
    comparison = session.scalar(select(Comparison).where(Comparison.slug == slug))
    if comparison is None:
        raise EditionError("slug", f"no comparison {slug[:100]!r}")
    if in_edition and comparison.id not in {
        c.id for c in edition_candidates(session, edition, now)
    }:
        raise EditionError(
            "slug", f"{slug!r} is not among edition {edition}'s comparisons (see `edition show`)"
        )
    return comparison


# --- the row ----------------------------------------------------------------------------------


def _open_row(session: Session, edition: str) -> EditionReview:
    """The edition's review row, locked, created when new; refused once a wave has fired.

    The lock comes before the check: a first wave being planned holds the row (planning reads
    it locked), so an edit waits for it and then sees the edition fired.
    """
    edition = parse_edition(edition)
    row = session.get(EditionReview, edition, with_for_update=True)
    if fired_editions(session, {edition}):
        raise EditionError("edition", f"{edition} has already fired; it can no longer change")
    if row is None:
        row = EditionReview(edition=edition, pinned=[], excluded=[])
        session.add(row)
        session.flush()
    return row


def _record(
    row: EditionReview, actor: str, action: str, target: str | None, before: Any, now: datetime
) -> Change:
    """Stamp the row and say what changed; a real change withdraws an approval."""
    after = _snapshot(row, action)
    withdrawn = False
    if before != after:
        row.updated_by, row.updated_at = actor, now
        if action != "approve" and row.approved_at is not None:
            row.approved_by, row.approved_at, withdrawn = None, None, True
    return Change(row.edition, actor, action, target, before, after, withdrawn)


def _snapshot(row: EditionReview, action: str) -> Any:
    if action in ("pin", "exclude", "restore"):
        return {"pinned": list(row.pinned or []), "excluded": list(row.excluded or [])}
    if action == "approve":
        return row.approved_at.isoformat() if row.approved_at else None
    return getattr(row, action)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# --- actions ----------------------------------------------------------------------------------


def _move(
    session: Session,
    edition: str,
    slug: str,
    action: str,
    *,
    actor: str,
    now: datetime | None,
) -> Change:
    """Pin (to the end of the pins), exclude, or restore one comparison."""
    actor, now = _actor(actor), _now(now)
    row = _open_row(session, edition)
    # restoring needs no place in the edition (a pinned comparison may have been retracted since)
    comparison = _comparison(session, row.edition, slug, now, in_edition=action != "restore")
    before = _snapshot(row, action)
    pinned = [i for i in row.pinned or [] if i != comparison.id]
    excluded = [i for i in row.excluded or [] if i != comparison.id]
    if action == "pin":
        pinned.append(comparison.id)
    elif action == "exclude":
        excluded.append(comparison.id)
    elif comparison.id not in before["pinned"] + before["excluded"]:
        raise EditionError("slug", f"{comparison.slug!r} is neither pinned nor excluded")
    if action == "pin" and comparison.id in before["pinned"]:
        pinned = before["pinned"]  # pinning again keeps its place
    row.pinned, row.excluded = pinned, excluded
    return _record(row, actor, action, comparison.slug, before, now)


def pin(
    session: Session, edition: str, slug: str, *, actor: str, now: datetime | None = None
) -> Change:
    """Put a comparison at the top, after those pinned before it (and no longer excluded)."""
    return _move(session, edition, slug, "pin", actor=actor, now=now)


def exclude(
    session: Session, edition: str, slug: str, *, actor: str, now: datetime | None = None
) -> Change:
    """Leave a comparison out of every wave and segment of the edition (and unpin it)."""
    return _move(session, edition, slug, "exclude", actor=actor, now=now)


def restore(
    session: Session, edition: str, slug: str, *, actor: str, now: datetime | None = None
) -> Change:
    """Undo a pin or an exclusion: the comparison takes its ranked place again."""
    return _move(session, edition, slug, "restore", actor=actor, now=now)


def _set(
    session: Session, edition: str, action: str, value: str | None, actor: str, now: datetime
) -> Change:
    row = _open_row(session, edition)
    before = getattr(row, action)
    setattr(row, action, value)
    return _record(row, actor, action, None, before, now)


def set_note(
    session: Session, edition: str, text: str | None, *, actor: str, now: datetime | None = None
) -> Change:
    """The editor's note above the items: plain text, paragraphs split on blank lines, shown
    escaped; empty clears it."""
    actor, text = _actor(actor), _note(text)
    return _set(session, edition, "note", text, actor, _now(now))


def set_subject(
    session: Session, edition: str, subject: str | None, *, actor: str, now: datetime | None = None
) -> Change:
    """Replace the generated subject (one line, at most 120 characters); empty restores it."""
    actor, subject = _actor(actor), _one_line(subject, "subject", SUBJECT_MAX)
    return _set(session, edition, "subject", subject, actor, _now(now))


def set_preheader(
    session: Session,
    edition: str,
    preheader: str | None,
    *,
    actor: str,
    now: datetime | None = None,
) -> Change:
    """Replace the generated preheader (one line, at most 150 characters); empty restores it."""
    actor, preheader = _actor(actor), _one_line(preheader, "preheader", PREHEADER_MAX)
    return _set(session, edition, "preheader", preheader, actor, _now(now))


def approve(session: Session, edition: str, *, actor: str, now: datetime | None = None) -> Change:
    """Approve the edition as it stands: with approval required, its waves may now fire."""
    actor, now = _actor(actor), _now(now)
    row = _open_row(session, edition)
    before = _snapshot(row, "approve")
    if row.approved_at is None:
        row.approved_by, row.approved_at = actor, now
    return _record(row, actor, "approve", None, before, now)


# --- reading ----------------------------------------------------------------------------------


def _slugs(session: Session, ids: list[int]) -> list[str]:
    if not ids:
        return []
    rows = session.execute(select(Comparison.id, Comparison.slug).where(Comparison.id.in_(ids)))
    by_id = {comparison_id: slug for comparison_id, slug in rows}
    return [by_id[i] for i in ids if i in by_id]


def _state(fired: bool, approved: bool, required: bool, slot: EditionSlot, now: datetime) -> str:
    if fired:
        return "fired"
    if approved:
        return "approved"
    if not required:
        return "open"
    grace = timedelta(hours=get_settings().weekly_grace_hours)
    return "missed" if now - slot.last_slot > grace else "waiting for approval"


def review_state(session: Session, edition: str, now: datetime | None = None) -> ReviewState:
    """The edition's overrides and whether it will go: open, waiting for approval, approved,
    fired, or missed (approval required and every wave's slot past the grace)."""
    now = _now(now)
    slot = edition_slot(session, edition)
    row = session.get(EditionReview, slot.edition)
    required = get_settings().weekly_approval == "required"
    fired = bool(fired_editions(session, {slot.edition}))
    approved = row is not None and row.approved_at is not None
    return ReviewState(
        edition=slot.edition,
        state=_state(fired, approved, required, slot, now),
        approval_required=required,
        first_slot=slot.first_slot,
        last_slot=slot.last_slot,
        pinned=_slugs(session, list(row.pinned or [])) if row else [],
        excluded=_slugs(session, list(row.excluded or [])) if row else [],
        note=row.note if row else None,
        subject=row.subject if row else None,
        preheader=row.preheader if row else None,
        approved_by=row.approved_by if row else None,
        approved_at=row.approved_at if row else None,
        updated_by=row.updated_by if row else None,
        updated_at=row.updated_at if row else None,
    )


def request_test_copy(
    session: Session, edition: str, to: str, *, actor: str, now: datetime | None = None
) -> TestCopy:
    """A test digest of the edition as it stands — its items in the reviewed order, its note,
    subject and preheader — to one address. The caller plans it (`plan_digest_id`)."""
    actor, now = _actor(actor), _now(now)
    slot = edition_slot(session, edition)
    overrides = EditionOverrides.from_row(session.get(EditionReview, slot.edition))
    preview = preview_ranking(session, slot.edition, now, overrides)
    if not preview.items:
        raise EditionError("edition", f"{slot.edition} has no comparisons to send yet")
    since, until = preview_window(session, slot, now)
    try:
        digest = request_digest(session, since=since, until=until, to=to, now=now)
    except PlanError as exc:
        raise EditionError(exc.field, exc.message) from exc
    digest.options = {**(digest.options or {}), "edition": slot.edition, "requested_by": actor}
    freeze(digest, overrides)
    session.flush()
    return TestCopy(slot.edition, digest.id, to, len(preview.items), actor)
