"""The public web archive: one page per sent edition, an index, and the keys that name them.

Every digest email starts with "View this email in your browser" and may end with "N more
comparisons on the web"; both link to its edition's page, `/archive/{key}`. The page shows the
edition's ranked comparisons in full and nothing personal (no greeting, no manage links).

Keys: every timezone wave of one weekly slot is one edition, so weekly digests share the key of
their local slot (`2026-11-23-0900`); an alert or an ad hoc digest is its own edition
(`alert-17`, `adhoc-18`). Test copies are never archived. A retracted comparison disappears from
every archive page (and the feed) as soon as it is retracted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.settings import get_settings
from schema.models import Comparison, Digest, DigestItem
from schema.statuses import DigestKind, DigestStatus

# Digests whose mail has (at least partly) gone out: their edition has a public page.
PUBLISHED = (DigestStatus.SENDING, DigestStatus.SENT)
ARCHIVED_KINDS = (DigestKind.WEEKLY, DigestKind.ALERT, DigestKind.ADHOC)
_WEEKLY_KEY = re.compile(r"(\d{4}-\d{2}-\d{2})-(\d{2})(\d{2})")
_OTHER_KEY = re.compile(r"(alert|adhoc|weekly)-(\d{1,19})")


@dataclass(frozen=True)
class EditionSummary:
    """One line of the archive index.

    Its title is the edition's kind and date, never the email's subject: a subject names the top
    comparison, which may have been retracted since.
    """

    key: str
    kind: DigestKind
    sent_at: datetime | None

    @property
    def title(self) -> str:
        what = {DigestKind.ALERT: "New verdict"}.get(self.kind, "Weekly AI Tool Verdicts")
        if self.kind == DigestKind.ADHOC:
            what = "Special edition"
        return f"{what} of {self.sent_at:%-d %B %Y}" if self.sent_at else what


@dataclass(frozen=True)
class ArchivedItem:
    """One comparison of an edition, at its rank, with the one-line reason for it."""

    rank: int
    comparison: Comparison
    explanation: str


@dataclass(frozen=True)
class Edition:
    """An edition's page: what it was called, when it went out, and its ranked comparisons."""

    summary: EditionSummary
    items: list[ArchivedItem]


def archive_key(digest: Digest) -> str | None:
    """The key of the edition this digest belongs to; None for a test copy."""
    if digest.kind == DigestKind.WEEKLY and digest.edition:
        day, _, clock = digest.edition.partition("T")
        return f"{day}-{clock[:2]}{clock[3:5]}"
    if digest.kind in (DigestKind.ALERT, DigestKind.ADHOC, DigestKind.WEEKLY):
        return f"{digest.kind}-{digest.id}"
    return None


def archive_url(digest: Digest) -> str:
    """Where "view in browser" points: the edition's page, or the index for a test copy."""
    base = f"{get_settings().public_url.rstrip('/')}/archive"
    key = archive_key(digest)
    return f"{base}/{key}" if key else base


def list_editions(session: Session, limit: int = 100) -> list[EditionSummary]:
    """Published editions, newest first; the waves of a weekly edition count once."""
    rows = session.execute(
        select(Digest)
        .where(Digest.kind.in_(ARCHIVED_KINDS), Digest.status.in_(PUBLISHED))
        .order_by(func.coalesce(Digest.started_at, Digest.created_at).desc(), Digest.id.desc())
        .limit(limit * 8)  # weekly waves come several to an edition
    ).scalars()
    seen: dict[str, EditionSummary] = {}
    for digest in rows:
        key = archive_key(digest)
        if key and key not in seen:
            seen[key] = _summary(digest, key)
        if len(seen) == limit:
            break
    return list(seen.values())


def find_edition(session: Session, key: str) -> Edition | None:
    """The edition named `key` with its comparisons (retracted ones left out), or None."""
    leader = _leader(session, key)
    if leader is None:
        return None
    rows = session.execute(
        select(DigestItem.rank, DigestItem.explanation, Comparison)
        .join(Comparison, Comparison.id == DigestItem.comparison_id)
        .where(DigestItem.digest_id == leader.id, Comparison.retracted.is_(False))
        .order_by(DigestItem.rank)
    ).all()
    items = [ArchivedItem(rank, comparison, why) for rank, why, comparison in rows]
    return Edition(_summary(leader, key), items)


def _leader(session: Session, key: str) -> Digest | None:
    """The first published digest of an edition (the wave whose items the others copied)."""
    weekly = _WEEKLY_KEY.fullmatch(key)
    other = _OTHER_KEY.fullmatch(key)
    query = select(Digest).where(Digest.status.in_(PUBLISHED))
    if weekly:
        day, hour, minute = weekly.groups()
        edition = f"{day}T{hour}:{minute}:00"
        query = query.where(Digest.kind == DigestKind.WEEKLY, Digest.edition == edition)
    elif other:
        kind, digest_id = other.groups()
        query = query.where(Digest.kind.in_(ARCHIVED_KINDS), Digest.id == int(digest_id))
        query = query.where(Digest.kind == kind)
    else:
        return None
    return session.scalars(query.order_by(Digest.id).limit(1)).first()


def _summary(digest: Digest, key: str) -> EditionSummary:
    return EditionSummary(key, DigestKind(digest.kind), digest.started_at or digest.created_at)
