"""Plan a digest: freeze its ranked items, render once per preference segment, write the ledger.

Everything a send needs is written before the first request (the database is the ledger):

1. **Items.** The window's comparisons (digest/collect.py), ranked (digest/ranking.py), frozen as
   `digest_items` with their score, one-line explanation and verdict fingerprint. A weekly wave
   whose edition already has a first wave reuses that wave's items, window and renders, so every
   timezone reads the same email (digest/schedule.py).
2. **Recipients**, read by keyset pagination on the subscriber id (`WHERE id > :last ORDER BY id
   LIMIT 5000`), never all at once: active, not paused, not suppressed (the shared
   `digest.addresses.email_hash`), of the digest's frequency, in the wave's timezone.
3. **Segments.** A subscriber's preference segment is the part of their categories that this
   digest's items cover ("all" when they chose none, or when their choice covers every item).
   Each segment is rendered once, on its first subscriber; a segment whose categories match no
   item gets nothing, and the digest records how many subscribers that left out.
4. **Batches** of at most `DIGEST_BATCH_SIZE` (1000) deliveries, one open batch per segment,
   flushed when full; no address twice in a batch. Deliveries are bulk inserts of plain rows.

The digest then becomes `sending` and the caller, after committing, hands the batch ids to the
workers (`digest.send_batch`, one task per batch, no chord: completion lives in the database).
A digest with nothing to send ends `cancelled` with the reason, e.g. "no new comparisons".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    case,
    cast,
    exists,
    func,
    insert,
    null,
    or_,
    select,
)
from sqlalchemy.orm import Session

from digest.addresses import email_hash, suppressed_hashes
from digest.collect import collect_comparisons, weekly_window
from digest.db import session_scope
from digest.email_backends import header_safe
from digest.ranking import rank_comparisons
from digest.rendering import Entry, render_alert, render_weekly
from digest.schedule import wave_timezones
from digest.settings import get_settings
from digest.subscriber_rows import insert_test_recipient
from digest.subscriptions import InvalidField, available_categories, normalise_email
from schema.models import (
    Comparison,
    Delivery,
    DeliveryBatch,
    Digest,
    DigestItem,
    DigestSegment,
    Subscriber,
    Suppression,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 5000
# A batch's deliveries stream in through COPY: psycopg dumps array parameters in Python,
# element by element, which cost more than the insert itself at a million recipients.
COPY_DELIVERIES = "COPY deliveries (digest_id, batch_id, subscriber_id, email, status) FROM STDIN"
INSERT_BATCH = (
    "INSERT INTO delivery_batches (digest_id, segment_id, seq, status, size, attempts)"
    " VALUES (%s, %s, %s, 'pending', %s, 0) RETURNING id"
)
# Addresses whose hash PostgreSQL computes exactly as `email_hash` does: printable ASCII, no
# spaces (strip() is a no-op, lower() agrees). Anything else is hashed in Python.
PLAIN_ADDRESS = "^[!-~]+$"
ALL = "all"
SEGMENT_KEY_MAX = 300
TEST_PREFIX = "[Test] "
UNMAILABLE = ("bounced", "complained", "deleted")


class PlanError(ValueError):
    """A digest request that cannot be planned; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass
class SegmentPlan:
    key: str
    label: str | None
    items: int
    recipients: int = 0
    batches: int = 0
    rendered: bool = False  # False: reused from the edition's first wave


@dataclass
class PlanReport:
    """What planning did, for the CLI, the admin API and the logs."""

    digest_id: int
    kind: str
    status: str
    reason: str | None
    since: datetime | None
    until: datetime | None
    items: list[tuple[int, str, float, str]]  # rank, title, score, explanation
    segments: list[SegmentPlan]
    left_out: dict[str, int]  # segment label -> subscribers whose categories match no item
    suppressed: int
    recipients: int
    renders: int
    batch_ids: list[int] = field(default_factory=list)
    dry_run: bool = False
    already_mailed: int = 0  # subscribers an earlier wave of the same edition reached

    @property
    def batches(self) -> int:
        return sum(s.batches for s in self.segments)


@dataclass
class _Item:
    rank: int
    comparison: Comparison
    score: float
    explanation: str
    categories: frozenset[str]  # case-folded


@dataclass
class _Segment:
    plan: SegmentPlan
    id: int | None
    emails: set[str] = field(default_factory=set)
    buffer: list[tuple[int, str]] = field(default_factory=list)


# --- requests -----------------------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _clean_segments(session: Session, names: Sequence[str]) -> list[str]:

    canonical = {c.casefold(): c for c in available_categories(session)}
    chosen = []
    for name in names:
        for part in name.split(","):
            part = part.strip()
            if not part:
                continue
            if part.casefold() not in canonical:
                known = ", ".join(sorted(canonical.values()))
                raise PlanError("segment", f"unknown category {part[:100]!r} (known: {known})")
            chosen.append(canonical[part.casefold()])
    return sorted(set(chosen))


def _test_recipient(session: Session, address: str) -> int:
    """The subscriber row a test copy goes to: the address's own row, or a pending placeholder.

    Deliveries need a subscriber (unsubscribe links are signed per subscriber). A new address
    gets a `pending` row with no consent: pending rows are never mailed by any digest, and a
    later signup of the same address goes through the normal double opt-in on that row.
    """

    try:
        email = normalise_email(address)
    except InvalidField as exc:
        raise PlanError("to", exc.message) from exc
    if session.scalar(select(Suppression.id).where(Suppression.email_hash == email_hash(email))):
        raise PlanError("to", "this address is suppressed (bounced, complained or erased)")
    row = session.execute(
        select(Subscriber.id, Subscriber.status).where(
            func.lower(Subscriber.email) == email.lower()
        )
    ).first()
    if row is not None:
        if row.status in UNMAILABLE:
            raise PlanError("to", f"this address is {row.status}: it is never mailed")
        return row.id
    return insert_test_recipient(session, email)


def request_digest(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    subject: str | None = None,
    segments: Sequence[str] = (),
    to: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Digest:
    """Validate an operator's ad hoc digest (or `to`: one test copy) and create it as planned.

    The window defaults to what the next weekly digest would cover. Nothing is rendered or
    written to the ledger yet: `plan_digest_id` does that (in the CLI, or a worker).
    """

    now = _aware(now) or datetime.now(UTC)
    since, until = _aware(since), _aware(until)
    default_since, default_until = weekly_window(session, until or now)
    since, until = since or default_since, until or default_until
    if since >= until:
        raise PlanError("since", f"{since.isoformat()} is not before until {until.isoformat()}")
    if subject is not None:
        subject = header_safe(subject)
        if not subject:
            raise PlanError("subject", "the subject is empty")
        if len(subject) > 300 - len(TEST_PREFIX):
            raise PlanError("subject", "the subject is longer than 290 characters")
    options: dict[str, Any] = {
        "subject": subject,
        "segments": _clean_segments(session, segments),
        "dry_run": bool(dry_run),
    }
    if to is not None:
        options["to_subscriber_id"] = _test_recipient(session, to)
    digest = Digest(
        kind="test" if to is not None else "adhoc",
        status="planned",
        window_start=since,
        window_end=until,
        options=options,
        created_at=now,
    )
    session.add(digest)
    session.flush()
    return digest


# --- items --------------------------------------------------------------------------------------


def _categories(comparison: Comparison) -> frozenset[str]:
    names = {comparison.category, *(t.category for t in comparison.tools)}
    return frozenset(n.casefold() for n in names if n)


def _edition_leader(session: Session, digest: Digest) -> Digest | None:
    """The first wave of the same weekly edition (same local slot), if another one fired."""
    edition = (digest.options or {}).get("edition")
    if digest.kind != "weekly" or not edition:
        return None
    return session.scalar(
        select(Digest)
        .where(
            Digest.kind == "weekly",
            Digest.slot_key.like(f"{edition}%"),
            Digest.id != digest.id,
        )
        .order_by(Digest.id)
        .limit(1)
    )


def _edition_renders(session: Session, digest: Digest) -> dict[str, DigestSegment]:
    """Every segment an earlier wave of this edition rendered, by key (first one wins)."""
    edition = (digest.options or {})["edition"]
    rows = session.scalars(
        select(DigestSegment)
        .join(Digest, Digest.id == DigestSegment.digest_id)
        .where(
            Digest.kind == "weekly",
            Digest.slot_key.like(f"{edition}%"),
            Digest.id != digest.id,
        )
        .order_by(DigestSegment.id.desc())
    )
    return {row.segment_key: row for row in rows}


def _freeze_items(session: Session, digest: Digest, ranked: list[Any]) -> list[_Item]:
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
            _Item(rank, comparison, entry.score, entry.explanation, _categories(comparison))
        )
    session.flush()
    return items


def _collect_items(session: Session, digest: Digest, now: datetime) -> list[_Item]:
    """Choose, rank and freeze the digest's comparisons."""

    options = digest.options or {}
    if digest.kind == "alert":
        comparison = session.get(Comparison, options["comparison_id"])
        chosen = [comparison] if comparison is not None and not comparison.retracted else []
    elif digest.kind == "weekly":
        until = digest.window_end or now
        since, _ = weekly_window(session, until)
        digest.window_start, digest.window_end = since, until
        chosen = collect_comparisons(session, since, until, kind="weekly")
    else:
        chosen = collect_comparisons(session, digest.window_start, digest.window_end, kind="adhoc")
        wanted = {c.casefold() for c in options.get("segments") or []}
        if wanted:
            chosen = [c for c in chosen if _categories(c) & wanted]
    return _freeze_items(session, digest, rank_comparisons(chosen))


def _copy_items(session: Session, digest: Digest, leader: Digest) -> list[_Item]:
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
        _Item(r.rank, r.comparison, r.score, r.explanation, _categories(r.comparison)) for r in rows
    ]


# --- recipients ---------------------------------------------------------------------------------


def _recipient_filter(session: Session, digest: Digest) -> list[ColumnElement[bool]]:
    """Who may receive this digest, as SQL conditions (suppression is checked per page)."""

    conditions: list[ColumnElement[bool]] = [
        Subscriber.status == "active",
        Subscriber.paused.is_(False),
    ]
    if digest.kind == "alert":
        conditions.append(Subscriber.frequency == "every")
        return conditions
    conditions.append(Subscriber.frequency == "weekly")
    timezone = (digest.options or {}).get("timezone")
    if digest.kind == "weekly" and timezone:
        default = get_settings().timezone
        if timezone == default:
            unknown = wave_timezones(session)[1]
            conditions.append(
                or_(
                    Subscriber.timezone.is_(None),
                    Subscriber.timezone.in_(["", default, *unknown]),
                )
            )
        else:
            conditions.append(Subscriber.timezone == timezone)
    return conditions


def _pages(session: Session, conditions: list[ColumnElement[bool]]) -> Any:
    """Recipients page by page as (id, email, categories as JSON text, suppressed), keyset on
    the id.

    Plain Core rows, and categories left as text: the planner parses each distinct value once.
    On PostgreSQL the page query itself asks whether a suppression holds the address (hashed in
    the database for plain ASCII addresses); other rows are hashed here, one query per page.
    """
    table = Subscriber.__table__
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        hashed = func.encode(func.sha256(func.convert_to(func.lower(table.c.email), "UTF8")), "hex")
        held = exists().where(Suppression.email_hash == hashed)
        flag = case((table.c.email.regexp_match(PLAIN_ADDRESS), held), else_=null())
    else:
        flag = null()
    last = 0
    while True:
        result = connection.execute(
            select(table.c.id, table.c.email, cast(table.c.categories, Text), flag)
            .where(*conditions, table.c.id > last)
            .order_by(table.c.id)
            .limit(PAGE_SIZE)
        )
        # the driver's own tuples: no result Row objects, a million times over
        rows = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        if not rows:
            return
        unknown = [row[1] for row in rows if row[3] is None]
        if unknown:
            blocked = suppressed_hashes(session, [email_hash(email) for email in unknown])
            rows = [
                row if row[3] is not None else (*row[:3], email_hash(row[1]) in blocked)
                for row in rows
            ]
        yield rows
        last = rows[-1][0]


# --- the plan -----------------------------------------------------------------------------------


def _segment_key(names: list[str]) -> str:
    key = "categories:" + ";".join(sorted(n.casefold() for n in names))
    if len(key) > SEGMENT_KEY_MAX:
        key = "categories#" + hashlib.sha256(key.encode()).hexdigest()
    return key


class _Planner:
    """One digest's segments and batch buffers while the recipients stream past."""

    def __init__(self, session: Session, digest: Digest, items: list[_Item], dry_run: bool):
        self.session, self.digest, self.items, self.dry_run = session, digest, items, dry_run
        self.batch_size = get_settings().batch_size
        self.all_categories = frozenset().union(*(i.categories for i in items))
        self.display = {
            n.casefold(): n
            for i in items
            for n in (i.comparison.category, *(t.category for t in i.comparison.tools))
            if n
        }
        self.by_preferences: dict[tuple[str, ...], _Segment | str] = {}
        self.segments: dict[str, _Segment] = {}
        self.left_out: dict[str, int] = {}
        self.inherited: dict[str, DigestSegment] = {}
        self.renderer: Callable[[list[_Item], str | None], Any] = self._render_weekly
        self.seq = 0
        self.renders = 0
        self.batch_ids: list[int] = []
        self.already_mailed = 0  # reached by an earlier wave of the same edition
        self.postgres = session.get_bind().dialect.name == "postgresql"

    # segments

    def segment_for(self, preferences: tuple[str, ...]) -> _Segment | str:
        """The segment of a subscriber's categories, or the label of a segment with no items."""
        found = self.by_preferences.get(preferences)
        if found is None:
            found = self._segment(preferences)
            self.by_preferences[preferences] = found
        return found

    def _segment(self, preferences: tuple[str, ...]) -> _Segment | str:
        wanted = {p.casefold() for p in preferences if p}
        matched = [i for i in self.items if not wanted or i.categories & wanted]
        if not matched:
            return " · ".join(sorted(p for p in preferences if p)) or ALL
        if len(matched) == len(self.items):
            key, label = ALL, None
        else:
            names = sorted(self.display[c] for c in wanted & self.all_categories)
            key, label = _segment_key(names), " · ".join(names)
        segment = self.segments.get(key)
        if segment is None:
            segment = self._new_segment(key, label, matched)
            self.segments[key] = segment
        return segment

    def _render_weekly(self, matched: list[_Item], label: str | None) -> Any:

        entries = [Entry(n, i.comparison, i.explanation) for n, i in enumerate(matched, start=1)]
        return render_weekly(entries, segment_label=label)

    def _new_segment(self, key: str, label: str | None, matched: list[_Item]) -> _Segment:
        options = self.digest.options or {}
        inherited = self.inherited.get(key)
        if inherited is not None:
            subject, html, text, preheader = (
                inherited.subject,
                inherited.html,
                inherited.text,
                self.digest.preheader,
            )
            nonce = inherited.placeholder_nonce
            rendered = False
        else:
            email = self.renderer(matched, label)
            subject, html, text, preheader = email.subject, email.html, email.text, email.preheader
            nonce = email.placeholders.nonce if email.placeholders else None
            rendered = True
            self.renders += 1
            if options.get("subject"):
                subject = options["subject"]
            if self.digest.kind == "test":
                subject = TEST_PREFIX + subject
        if self.digest.subject is None or key == ALL:
            self.digest.subject, self.digest.preheader = subject[:300], (preheader or "")[:300]
        row = DigestSegment(
            digest_id=self.digest.id,
            segment_key=key,
            subject=subject[:300],
            html=html,
            text=text,
            placeholder_nonce=nonce,
        )
        self.session.add(row)
        self.session.flush()
        plan = SegmentPlan(key, label, len(matched), rendered=rendered)
        return _Segment(plan, row.id)

    # batches

    def add(self, segment: _Segment, subscriber_id: int, email: str) -> None:
        folded = email.lower()
        if folded in segment.emails:  # the unique index makes this impossible; guard anyway
            log.warning("digest %s: %s twice in one batch, kept once", self.digest.id, email)
            return
        segment.emails.add(folded)
        segment.buffer.append((subscriber_id, email))
        if len(segment.buffer) >= self.batch_size:
            self.flush(segment)

    def flush(self, segment: _Segment) -> None:
        if not segment.buffer:
            return
        self.seq += 1
        size = len(segment.buffer)
        if not self.dry_run:
            batch_id = self._insert_batch(segment.id, size)
            self._insert_deliveries(batch_id, segment.buffer)
            self.batch_ids.append(batch_id)
        segment.plan.recipients += size
        segment.plan.batches += 1
        segment.buffer.clear()
        segment.emails.clear()

    def _insert_batch(self, segment_id: int | None, size: int) -> int:
        """The batch row, returning its id. On PostgreSQL straight through the driver: there is
        one per thousand recipients, and SQLAlchemy's statement handling cost more than the row.
        """
        if self.postgres:
            driver = self.session.connection().connection.driver_connection
            with driver.cursor() as cursor:
                cursor.execute(INSERT_BATCH, (self.digest.id, segment_id, self.seq, size))
                (batch_id,) = cursor.fetchone()
                return batch_id
        batch_id = self.session.scalar(
            insert(DeliveryBatch)
            .values(
                digest_id=self.digest.id,
                segment_id=segment_id,
                seq=self.seq,
                status="pending",
                size=size,
                attempts=0,
            )
            .returning(DeliveryBatch.id)
        )
        assert batch_id is not None
        return batch_id

    def _insert_deliveries(self, batch_id: int, recipients: list[tuple[int, str]]) -> None:
        """One batch's deliveries in one statement: COPY on PostgreSQL, else executemany."""
        if self.postgres:
            driver = self.session.connection().connection.driver_connection
            with driver.cursor() as cursor, cursor.copy(COPY_DELIVERIES) as copy:
                digest_id = self.digest.id
                for subscriber_id, email in recipients:
                    copy.write_row((digest_id, batch_id, subscriber_id, email, "pending"))
            return
        self.session.execute(
            insert(Delivery),
            [
                {
                    "digest_id": self.digest.id,
                    "batch_id": batch_id,
                    "subscriber_id": subscriber_id,
                    "email": email,
                    "status": "pending",
                }
                for subscriber_id, email in recipients
            ],
        )

    def flush_all(self) -> None:
        for segment in self.segments.values():
            self.flush(segment)
        for segment in self.segments.values():
            self.session.execute(
                DigestSegment.__table__.update()
                .where(DigestSegment.id == segment.id)
                .values(recipients=segment.plan.recipients)
            )


def _render_alert(matched: list[_Item], label: str | None) -> Any:

    return render_alert(matched[0].comparison, matched[0].explanation)


def _earlier_waves(session: Session, digest: Digest) -> list[int]:
    """Ids of the other waves of this weekly edition (empty for any other digest)."""
    edition = (digest.options or {}).get("edition")
    if digest.kind != "weekly" or not edition:
        return []
    return list(
        session.scalars(
            select(Digest.id).where(
                Digest.kind == "weekly",
                Digest.slot_key.like(f"{edition}%"),
                Digest.id != digest.id,
            )
        )
    )


def _mailed_in(session: Session, digest_ids: list[int], first: int, last: int) -> set[int]:
    """Subscribers in [first, last] who already have a delivery of one of these digests."""
    return set(
        session.scalars(
            select(Delivery.subscriber_id).where(
                Delivery.digest_id.in_(digest_ids),
                Delivery.subscriber_id.between(first, last),
            )
        )
    )


def _stream(session: Session, digest: Digest, planner: _Planner) -> int:
    """Feed every eligible recipient to the planner; returns how many were suppressed."""
    options = digest.options or {}
    suppressed = 0
    if digest.kind == "test":
        subscriber = session.get(Subscriber, options["to_subscriber_id"])
        if subscriber is None or subscriber.status in UNMAILABLE:
            return 0
        if suppressed_hashes(session, [email_hash(subscriber.email)]):
            return 1
        segment = planner.segment_for(())
        if isinstance(segment, _Segment):
            planner.add(segment, subscriber.id, subscriber.email)
        return 0
    segments: dict[str | None, _Segment | str] = {}  # categories as stored -> segment
    earlier = _earlier_waves(session, digest)
    for rows in _pages(session, _recipient_filter(session, digest)):
        mailed = _mailed_in(session, earlier, rows[0][0], rows[-1][0]) if earlier else set()
        for subscriber_id, email, categories, blocked in rows:
            if blocked:
                suppressed += 1
                continue
            if subscriber_id in mailed:  # moved timezone after an earlier wave reached them
                planner.already_mailed += 1
                continue
            segment = segments.get(categories)
            if segment is None:
                chosen = json.loads(categories) if categories else []
                segment = segments[categories] = planner.segment_for(tuple(chosen or ()))
            if isinstance(segment, str):
                planner.left_out[segment] = planner.left_out.get(segment, 0) + 1
                continue
            planner.add(segment, subscriber_id, email)
    return suppressed


def _window_text(digest: Digest) -> str:
    if digest.window_start is None or digest.window_end is None:
        return ""
    return (
        f" between {digest.window_start:%Y-%m-%d %H:%M} and {digest.window_end:%Y-%m-%d %H:%M} UTC"
    )


def plan_digest(session: Session, digest: Digest, *, now: datetime | None = None) -> PlanReport:
    """Freeze items, render segments and write batches and deliveries for a `planned` digest.

    Ends with the digest `sending` (or `cancelled` with the reason when there is nothing to
    send, or for a dry run). The caller commits, then enqueues `report.batch_ids`.
    """
    now = _aware(now) or datetime.now(UTC)
    if digest.status != "planned":
        raise PlanError("status", f"digest {digest.id} is {digest.status}, not planned")
    options = digest.options or {}
    dry_run = bool(options.get("dry_run"))
    leader = _edition_leader(session, digest)
    items = _copy_items(session, digest, leader) if leader else _collect_items(session, digest, now)
    planner = _Planner(session, digest, items, dry_run)
    if digest.kind == "alert":
        planner.renderer = _render_alert
    if leader is not None:
        planner.inherited = _edition_renders(session, digest)
        digest.subject, digest.preheader = leader.subject, leader.preheader
    suppressed = 0
    if not items:
        digest.status = "cancelled"
        digest.status_reason = (
            "retracted or unknown comparison: no alert"
            if digest.kind == "alert"
            else f"no new comparisons{_window_text(digest)}: nothing to send"
        )
    else:
        suppressed = _stream(session, digest, planner)
        planner.flush_all()
    recipients = sum(s.plan.recipients for s in planner.segments.values())
    digest.recipients, digest.renders = recipients, planner.renders
    if planner.left_out:
        digest.options = {**options, "left_out": dict(sorted(planner.left_out.items()))}
    if items and dry_run:
        digest.status = "cancelled"
        digest.status_reason = (
            f"dry run: {recipients} recipient(s) in {len(planner.segments)} segment(s), "
            f"{planner.seq} batch(es); nothing sent"
        )
    elif items and recipients == 0:
        digest.status = "cancelled"
        digest.status_reason = "no recipients" + (
            f" in the {options['timezone']} wave" if options.get("timezone") else ""
        )
    elif items:
        digest.status, digest.started_at = "sending", now
    if digest.status == "cancelled":
        digest.finished_at = now
    session.flush()
    log.info("digest %s (%s): %s", digest.id, digest.kind, digest.status_reason or digest.status)
    return PlanReport(
        digest_id=digest.id,
        kind=digest.kind,
        status=digest.status,
        reason=digest.status_reason,
        since=digest.window_start,
        until=digest.window_end,
        items=[(i.rank, i.comparison.title, i.score, i.explanation) for i in items],
        segments=[s.plan for s in planner.segments.values()],
        left_out=dict(sorted(planner.left_out.items())),
        suppressed=suppressed,
        recipients=recipients,
        renders=planner.renders,
        batch_ids=list(planner.batch_ids),
        dry_run=dry_run,
        already_mailed=planner.already_mailed,
    )


def plan_digest_id(digest_id: int, *, now: datetime | None = None) -> PlanReport | None:
    """Plan digest `digest_id` in its own transaction (the `digest.plan_digest` task).

    The digest row is locked first; a duplicated task finds it no longer `planned` and returns
    None. After the commit the caller hands `report.batch_ids` to the workers.

    Idempotent, and relied on: beat's `digest.requeue_planned_digests` queues the task again for
    a digest left `planned` (its first task lost), so two tasks may arrive. The second waits on
    the row lock while the first plans, then sees `sending`/`cancelled` and does nothing; if
    the first rolled back, the digest is still `planned` and the second plans it.
    """

    with session_scope() as session:
        digest = session.execute(
            select(Digest).where(Digest.id == digest_id).with_for_update()
        ).scalar_one_or_none()
        if digest is None:
            raise LookupError(f"no digest {digest_id}")
        if digest.status != "planned":
            log.info("digest %s is %s: nothing to plan", digest_id, digest.status)
            return None
        return plan_digest(session, digest, now=now)


def pending_batch_ids(session: Session, digest_id: int) -> list[int]:
    """The batches of a digest still waiting for a worker, in send order."""
    return list(
        session.scalars(
            select(DeliveryBatch.id)
            .where(DeliveryBatch.digest_id == digest_id, DeliveryBatch.status == "pending")
            .order_by(DeliveryBatch.seq)
        )
    )
