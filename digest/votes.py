"""Readers' verdicts: Ship it / Skip it from a digest's links, one per reader per tool.

A link names a digest and a subscriber through its signed reader token (digest/tokens.py) and a
comparison, a tool and a choice in plain path segments. Before anything is recorded the link
must still hold: the digest exists and is not a test copy, it is at most `DIGEST_VOTE_DAYS`
old, the comparison was in *that* digest (a token cannot vote on another week's comparisons),
and the subscriber is still active. A reader's later choice replaces the earlier one; each new
or changed verdict writes a `reader_vote.cast` event to the outbox (digest/site_events.py) in
the same transaction, when the site webhook is configured. Erasure keeps a verdict's count and
forgets whose it was (`forget_reader`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from digest import site_events
from digest.ranking import ReaderCount, ReaderCounts
from digest.settings import get_settings
from digest.tokens import ReaderClaim
from schema.models import Comparison, Digest, DigestItem, ReaderVote, Subscriber, Tool, utcnow
from schema.statuses import DigestKind, SubscriberStatus

CHOICES = ("ship", "skip")
SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,199}")


class VoteRefused(Exception):
    """A vote link that cannot count; `status` is the HTTP answer, the message the page text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class VoteTarget:
    """What a valid vote link points at."""

    digest_id: int
    subscriber_id: int
    comparison_id: int
    slug: str
    title: str
    url: str | None
    tool_position: int
    tool_name: str


@dataclass(frozen=True)
class ToolTally:
    name: str
    ship: int
    skip: int

    @property
    def total(self) -> int:
        return self.ship + self.skip

    @property
    def ship_pct(self) -> int | None:
        return round(100 * self.ship / self.total) if self.total else None


@dataclass(frozen=True)
class VoteOutcome:
    """A recorded verdict: whether it was new, changed or a repeat, and the tally after it."""

    target: VoteTarget
    choice: str
    previous: str | None
    tallies: list[ToolTally]
    event_row_id: int | None

    @property
    def changed(self) -> bool:
        return self.previous != self.choice


def find_target(
    session: Session, claim: ReaderClaim, slug: str, position: int, now: datetime | None = None
) -> VoteTarget:
    """The link's target, or `VoteRefused` saying why it cannot count. Reads only."""
    if not SLUG.fullmatch(slug) or position not in (0, 1):
        raise VoteRefused(404, "There is no such comparison in this email.")
    digest = session.execute(  # columns only: this runs once per click
        select(Digest.id, Digest.kind, Digest.started_at, Digest.created_at).where(
            Digest.id == claim.digest_id
        )
    ).first()
    if digest is None or digest.kind == DigestKind.TEST:
        raise VoteRefused(404, "This link does not belong to one of our digests.")
    sent = digest.started_at or digest.created_at
    if (now or utcnow()) > sent + timedelta(days=get_settings().vote_days):
        raise VoteRefused(410, "Voting from this email has closed.")
    row = session.execute(
        select(Comparison.id, Comparison.title, Comparison.url, Tool.name)
        .join(DigestItem, DigestItem.comparison_id == Comparison.id)
        .join(Tool, (Tool.comparison_id == Comparison.id) & (Tool.position == position))
        .where(DigestItem.digest_id == digest.id, Comparison.slug == slug)
    ).first()
    if row is None:
        raise VoteRefused(404, "There is no such comparison in this email.")
    status = session.scalar(select(Subscriber.status).where(Subscriber.id == claim.subscriber_id))
    if status != SubscriberStatus.ACTIVE:
        raise VoteRefused(403, "Only current subscribers can vote from an email.")
    return VoteTarget(
        digest.id, claim.subscriber_id, row.id, slug, row.title, row.url, position, row.name
    )


def cast(
    session: Session,
    claim: ReaderClaim,
    slug: str,
    position: int,
    choice: str,
    now: datetime | None = None,
) -> VoteOutcome:
    """Record the reader's verdict (the latest counts); an outbox event if it is new or changed.
    The caller commits, then queues `event_row_id` for delivery."""
    if choice not in CHOICES:
        raise VoteRefused(404, "A verdict is either ship or skip.")
    now = now or utcnow()
    target = find_target(session, claim, slug, position, now)
    previous = _upsert(session, target, choice, now)
    event_row_id = None
    if previous != choice:
        event_row_id = site_events.record_vote_cast(
            session,
            slug=target.slug,
            tool=target.tool_name,
            tool_position=target.tool_position,
            choice=choice,
            previous=previous,
            reader=reader_id(target.subscriber_id),
            cast_at=now,
        )
    counts = tallies(session, target.comparison_id)
    return VoteOutcome(target, choice, previous, counts, event_row_id)


def _upsert(session: Session, target: VoteTarget, choice: str, now: datetime) -> str | None:
    """Insert or replace the reader's row; the choice it held before (None: a first verdict).
    Two first clicks at once: the loser's INSERT does nothing (unique key), it re-reads and
    updates."""
    key = (
        ReaderVote.subscriber_id == target.subscriber_id,
        ReaderVote.comparison_id == target.comparison_id,
        ReaderVote.tool_position == target.tool_position,
    )
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for _ in range(2):
        existing = session.execute(
            select(ReaderVote.id, ReaderVote.choice).where(*key).with_for_update()
        ).first()
        if existing is not None:
            if existing.choice != choice:
                session.execute(
                    update(ReaderVote)
                    .where(ReaderVote.id == existing.id)
                    .values(choice=choice, digest_id=target.digest_id, updated_at=now)
                )
            return existing.choice
        inserted = session.execute(
            insert(ReaderVote)
            .values(
                subscriber_id=target.subscriber_id,
                digest_id=target.digest_id,
                comparison_id=target.comparison_id,
                tool_position=target.tool_position,
                choice=choice,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["subscriber_id", "comparison_id", "tool_position"]
            )
            .returning(ReaderVote.id)
        ).first()
        if inserted is not None:
            return None
    raise RuntimeError("reader vote: the unique key kept changing under us")


def tallies(session: Session, comparison_id: int) -> list[ToolTally]:
    """Readers' verdicts on each tool of one comparison, erased readers' included."""
    return tallies_for(session, [comparison_id]).get(comparison_id, [])


def tallies_for(session: Session, comparison_ids: list[int]) -> dict[int, list[ToolTally]]:
    """Per comparison, per tool (in position order): readers' ship and skip counts, in one
    query (tools outer-joined to their verdicts)."""
    if not comparison_ids:
        return {}
    votes_of_tool = (ReaderVote.comparison_id == Tool.comparison_id) & (
        ReaderVote.tool_position == Tool.position
    )
    rows = session.execute(
        select(
            Tool.comparison_id,
            Tool.name,
            func.count(ReaderVote.id).filter(ReaderVote.choice == "ship"),
            func.count(ReaderVote.id).filter(ReaderVote.choice == "skip"),
        )
        .outerjoin(ReaderVote, votes_of_tool)
        .where(Tool.comparison_id.in_(comparison_ids))
        .group_by(Tool.comparison_id, Tool.position, Tool.name)
        .order_by(Tool.comparison_id, Tool.position)
    )
    result: dict[int, list[ToolTally]] = {}
    for comparison_id, name, ship, skip in rows:
        result.setdefault(comparison_id, []).append(ToolTally(name, ship, skip))
    return result


def reader_counts(session: Session, comparisons: list[Comparison]) -> ReaderCounts:
    """Readers' verdicts for ranking, by (comparison id, tool position); no query while
    `DIGEST_RANK_READER_WEIGHT` is 0 (they would not count)."""
    if get_settings().rank_reader_weight <= 0 or not comparisons:
        return {}
    counts = tallies_for(session, [c.id for c in comparisons])
    return {
        (comparison_id, position): ReaderCount(t.ship, t.skip)
        for comparison_id, tools in counts.items()
        for position, t in enumerate(tools)
    }


def reader_id(subscriber_id: int) -> str:
    """The opaque id the site sees for a reader: a keyed hash of the subscriber id, stable (so
    the site can count a changed verdict once) and meaningless without our key."""
    key = get_settings().signing_key.encode()
    message = f"digest.reader-id:{int(subscriber_id)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class ReaderVerdict:
    """One of a reader's verdicts: which comparison, which tool, which way, when."""

    comparison: str  # slug
    tool_position: int
    tool: str
    choice: str
    at: datetime


def reader_verdicts(session: Session, subscriber_id: int) -> list[ReaderVerdict]:
    """A subscriber's current verdicts, in the order cast (the console, the export)."""
    rows = session.execute(
        select(Comparison.slug, ReaderVote.tool_position, Tool.name, ReaderVote.choice)
        .add_columns(ReaderVote.updated_at)
        .join(Comparison, Comparison.id == ReaderVote.comparison_id)
        .join(
            Tool,
            (Tool.comparison_id == ReaderVote.comparison_id)
            & (Tool.position == ReaderVote.tool_position),
        )
        .where(ReaderVote.subscriber_id == subscriber_id)
        .order_by(ReaderVote.id)
    )
    return [ReaderVerdict(*row) for row in rows]


def verdicts_of(session: Session, subscriber_id: int) -> list[dict[str, object]]:
    """A subscriber's verdicts, for their data export (the JSON document's shape)."""
    return [
        {
            "comparison": v.comparison,
            "tool_position": v.tool_position,
            "tool": v.tool,
            "choice": v.choice,
            "at": v.at.isoformat(),
        }
        for v in reader_verdicts(session, subscriber_id)
    ]


def forget_reader(session: Session, subscriber_id: int) -> int:
    """Erasure: the verdicts stay counted, no longer anyone's (nor any digest's). Returns how
    many were anonymised."""
    result = session.execute(
        update(ReaderVote)
        .where(ReaderVote.subscriber_id == subscriber_id)
        .values(subscriber_id=None, digest_id=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
