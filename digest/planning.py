"""Plan a digest: freeze its ranked items, render once per preference segment, write the ledger.

Everything a send needs is written before the first request (the database is the ledger):

1. **Items** (digest/plan_items.py). The window's comparisons (digest/collect.py), ranked
   (digest/ranking.py), frozen as `digest_items` with their score, one-line explanation and
   verdict fingerprint. A weekly wave whose edition already has a first wave reuses that wave's
   items, window and renders (digest/editions.py), so every timezone reads the same email.
2. **Recipients** (digest/plan_recipients.py), read 5,000 at a time in subscriber id order
   (one streamed query on PostgreSQL, keyset pages on SQLite), never all at once: active, not
   paused, not suppressed (the shared `digest.addresses.email_hash`), of the digest's
   frequency, in the wave's timezone.
3. **Segments** (digest/segments.py). A subscriber's preference segment is the part of their
   categories that this digest's items cover ("all" when they chose none, or when their choice
   covers every item). Each segment is rendered once, on its first subscriber; a segment whose
   categories match no item gets nothing, and the digest records how many subscribers that left
   out.
4. **Batches** (digest/ledger_writer.py) of at most `DIGEST_BATCH_SIZE` (1000) recipients, one
   open batch per segment, flushed when full. A batch row holds its
   recipients' subscriber ids; its first claim writes their delivery rows
   (digest/batch_recipients.py).

The digest then becomes `sending` and the caller, after committing, hands the batch ids to the
workers (`digest.send_batch`, one task per batch, no chord: completion lives in the database).
A digest with nothing to send ends `cancelled` with the reason, e.g. "no new comparisons".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.addresses import is_suppressed
from digest.archive import archive_url
from digest.db import session_scope
from digest.edition_overrides import EditionOverrides, freeze, frozen_overrides, overrides_for
from digest.editions import edition_renders, mailed_in, other_waves
from digest.ledger_writer import LedgerWriter
from digest.plan_items import PlannedItem, collect_items, copy_items
from digest.plan_recipients import RecipientPage, recipient_filter, recipient_pages
from digest.plan_requests import UNMAILABLE, PlanError, request_digest
from digest.segments import (
    OpenSegment,
    Renderer,
    SegmentPlan,
    Segments,
    render_alert_segment,
    render_weekly_segment,
)
from digest.settings import get_settings
from schema.models import Digest, DigestSegment, Subscriber
from schema.statuses import DigestKind, DigestStatus

# PlanError and request_digest live in digest/plan_requests.py; importable from here too.
__all__ = [
    "PlanError",
    "PlanReport",
    "SegmentPlan",
    "plan_digest",
    "plan_digest_id",
    "request_digest",
]

log = logging.getLogger(__name__)


@dataclass
class PlanReport:
    """What planning did, for the CLI, the admin API and the logs."""

    digest_id: int
    kind: DigestKind
    status: DigestStatus
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


# --- the plan -----------------------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Planner:
    """One digest's segments and batch buffers while the recipients stream past."""

    def __init__(
        self,
        session: Session,
        digest: Digest,
        items: list[PlannedItem],
        *,
        renderer: Renderer,
        inherited: dict[str, DigestSegment],
        earlier_waves: list[int],
        dry_run: bool,
    ) -> None:
        self.session, self.digest = session, digest
        self.segments = Segments(session, digest, items, renderer=renderer, inherited=inherited)
        self.ledger = LedgerWriter(
            session, digest.id, batch_size=get_settings().batch_size, dry_run=dry_run
        )
        self.earlier_waves = earlier_waves  # ids of other waves of this edition
        # categories as stored (JSON text) -> segment, so each distinct value is parsed once
        self.by_categories: dict[str | None, OpenSegment | str] = {}
        self.left_out: dict[str, int] = {}
        self.suppressed = 0
        self.already_mailed = 0  # reached by an earlier wave of the same edition

    def take_page(self, page: RecipientPage) -> None:
        """Place one page of recipients in their segments' batches.

        The hot loop of planning (once per recipient): the row's fields are unpacked by name in
        the `for`, and nothing is called per row that the old inline loop did not call.
        """
        mailed: set[int] = set()
        if self.earlier_waves:
            mailed = mailed_in(self.session, self.earlier_waves, page.first_id, page.last_id)
        by_categories, add = self.by_categories, self.ledger.add
        for subscriber_id, _, categories, suppressed in page.rows:
            if suppressed:
                self.suppressed += 1
                continue
            if subscriber_id in mailed:  # moved timezone after an earlier wave reached them
                self.already_mailed += 1
                continue
            segment = by_categories.get(categories)
            if segment is None:
                segment = by_categories[categories] = self._segment_of(categories)
            if isinstance(segment, str):
                self.left_out[segment] = self.left_out.get(segment, 0) + 1
                continue
            add(segment, subscriber_id)

    def _segment_of(self, categories: str | None) -> OpenSegment | str:
        """The segment of a subscriber's categories as stored (JSON text)."""
        chosen = json.loads(categories) if categories else []
        return self.segments.segment_for(tuple(chosen or ()))

    def take_test_copy(self, subscriber_id: int) -> None:
        """A test digest's one recipient, unless unmailable or suppressed."""
        subscriber = self.session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.status in UNMAILABLE:
            return
        if is_suppressed(self.session, subscriber.email):
            self.suppressed = 1
            return
        segment = self.segments.segment_for(())
        if isinstance(segment, OpenSegment):
            self.ledger.add(segment, subscriber.id)

    def finish(self) -> None:
        """Flush every open batch, then record each segment's recipients."""
        for segment in self.segments.open.values():
            self.ledger.flush(segment)
        self.segments.record_recipients()

    @property
    def recipients(self) -> int:
        return sum(s.plan.recipients for s in self.segments.open.values())


def _stream(session: Session, digest: Digest, planner: _Planner) -> None:
    """Feed every eligible recipient to the planner."""
    if digest.kind == DigestKind.TEST:
        planner.take_test_copy((digest.options or {})["to_subscriber_id"])
        return
    for page in recipient_pages(session, recipient_filter(session, digest)):
        planner.take_page(page)


def _window_text(digest: Digest) -> str:
    if digest.window_start is None or digest.window_end is None:
        return ""
    return (
        f" between {digest.window_start:%Y-%m-%d %H:%M} and {digest.window_end:%Y-%m-%d %H:%M} UTC"
    )


def _review(session: Session, digest: Digest, leader: Digest | None) -> EditionOverrides | None:
    """The operator's overrides this digest is planned with, frozen on it: the edition's first
    wave reads the table, later waves the first wave's copy, a test copy what it froze when it
    was requested; None for a digest that is no edition's."""
    if leader is not None:
        overrides = frozen_overrides(leader) or EditionOverrides()
    elif digest.kind == DigestKind.WEEKLY:
        overrides = overrides_for(session, digest.edition, lock=True)
    else:
        return frozen_overrides(digest)
    freeze(digest, overrides)
    return overrides


def _new_planner(session: Session, digest: Digest, now: datetime) -> _Planner:
    """Freeze the items (the edition leader's, if this wave has one) and set up the planner."""
    waves = other_waves(session, digest)
    leader = waves[0] if waves else None
    review = _review(session, digest, leader)
    if leader is not None:
        items = copy_items(session, digest, leader)
        digest.subject, digest.preheader = leader.subject, leader.preheader
    else:
        items = collect_items(session, digest, now, review)
    alert = digest.kind == DigestKind.ALERT
    return _Planner(
        session,
        digest,
        items,
        # every email links its edition's archive page ("view in browser", "more on the web")
        renderer=partial(
            render_alert_segment if alert else render_weekly_segment,
            archive_url=archive_url(digest),
            review=review,
        ),
        inherited=edition_renders(session, waves) if leader is not None else {},
        earlier_waves=[wave.id for wave in waves],
        dry_run=bool((digest.options or {}).get("dry_run")),
    )


def _cancel(digest: Digest, reason: str) -> None:
    digest.status, digest.status_reason = DigestStatus.CANCELLED, reason


def _conclude(digest: Digest, planner: _Planner, has_items: bool, now: datetime) -> None:
    """The digest's status once the ledger is written: sending, or cancelled with the reason."""
    options = digest.options or {}
    recipients = planner.recipients
    if not has_items:
        _cancel(
            digest,
            "retracted or unknown comparison: no alert"
            if digest.kind == DigestKind.ALERT
            else f"no new comparisons{_window_text(digest)}: nothing to send",
        )
    elif options.get("dry_run"):
        _cancel(
            digest,
            f"dry run: {recipients} recipient(s) in {len(planner.segments.open)} segment(s), "
            f"{planner.ledger.seq} batch(es); nothing sent",
        )
    elif recipients == 0:
        wave = f" in the {options['timezone']} wave" if options.get("timezone") else ""
        _cancel(digest, "no recipients" + wave)
    else:
        digest.status, digest.started_at = DigestStatus.SENDING, now
    if digest.status == DigestStatus.CANCELLED:
        digest.finished_at = now


def _report(digest: Digest, planner: _Planner) -> PlanReport:
    items = planner.segments.items
    return PlanReport(
        digest_id=digest.id,
        kind=digest.kind,
        status=digest.status,
        reason=digest.status_reason,
        since=digest.window_start,
        until=digest.window_end,
        items=[(i.rank, i.comparison.title, i.score, i.explanation) for i in items],
        segments=[s.plan for s in planner.segments.open.values()],
        left_out=dict(sorted(planner.left_out.items())),
        suppressed=planner.suppressed,
        recipients=planner.recipients,
        renders=planner.segments.renders,
        batch_ids=list(planner.ledger.batch_ids),
        dry_run=planner.ledger.dry_run,
        already_mailed=planner.already_mailed,
    )


def plan_digest(session: Session, digest: Digest, *, now: datetime | None = None) -> PlanReport:
    """Freeze items, render segments and write the batches of a `planned` digest.

    Ends with the digest `sending` (or `cancelled` with the reason when there is nothing to
    send, or for a dry run). The caller commits, then enqueues `report.batch_ids`.
    """
    now = _aware(now) or datetime.now(UTC)
    if digest.status != DigestStatus.PLANNED:
        raise PlanError("status", f"digest {digest.id} is {digest.status}, not planned")
    planner = _new_planner(session, digest, now)
    has_items = bool(planner.segments.items)
    if has_items:
        _stream(session, digest, planner)
        planner.finish()
    digest.recipients, digest.renders = planner.recipients, planner.segments.renders
    if planner.left_out:
        left_out = dict(sorted(planner.left_out.items()))
        digest.options = {**(digest.options or {}), "left_out": left_out}
    _conclude(digest, planner, has_items, now)
    session.flush()
    log.info("digest %s (%s): %s", digest.id, digest.kind, digest.status_reason or digest.status)
    return _report(digest, planner)


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
        if digest.status != DigestStatus.PLANNED:
            log.info("digest %s is %s: nothing to plan", digest_id, digest.status)
            return None
        return plan_digest(session, digest, now=now)
