"""The data's shape: SQLAlchemy 2.0 models. No behaviour lives here.

Constraints are in the database (checks, uniques, foreign keys) so that SQLite and PostgreSQL
both refuse bad rows, whatever code path writes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship

from schema.statuses import (
    BatchStatus,
    DeliveryStatus,
    DigestKind,
    DigestStatus,
    Frequency,
    ListImportStatus,
    Persona,
    SubscriberStatus,
    SuppressionReason,
    VerdictLabel,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGINT ids.
Id = BigInteger().with_variant(Integer(), "sqlite")

# A list of ids in one column: BIGINT[] on PostgreSQL, a JSON array on SQLite (NULL is SQL NULL).
IdList = ARRAY(BigInteger()).with_variant(JSON(none_as_null=True), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


VERDICT_LABELS = tuple(VerdictLabel)
PERSONAS = tuple(Persona)
SUBSCRIBER_STATUSES = tuple(SubscriberStatus)
DIGEST_KINDS = tuple(DigestKind)
DIGEST_STATUSES = tuple(DigestStatus)
BATCH_STATUSES = tuple(BatchStatus)
DELIVERY_STATUSES = tuple(DeliveryStatus)


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class EnumText(TypeDecorator[StrEnum]):
    """A `StrEnum` stored as its text: rows come back as members, not bare strings."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        # Unknown text goes through as it is: the check constraint refuses it in the database.
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: object) -> StrEnum | None:
        return None if value is None else self.enum(value)


class Comparison(Base):
    """One published side-by-side page: two tools and their panel."""

    __tablename__ = "comparisons"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str | None] = mapped_column(String(1000))
    category: Mapped[str | None] = mapped_column(String(200))
    published_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    retracted: Mapped[bool] = mapped_column(Boolean, default=False)
    retracted_at: Mapped[datetime | None]
    # Hash of the facts a verdict rests on; a change re-qualifies the comparison for a digest.
    verdict_fingerprint: Mapped[str] = mapped_column(String(64))
    # Hash of everything the page states; an identical re-import is recognised as unchanged.
    content_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tools: Mapped[list[Tool]] = relationship(
        back_populates="comparison",
        order_by="Tool.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )

    __table_args__ = (
        CheckConstraint("slug <> ''", name="slug_not_empty"),
        CheckConstraint("title <> ''", name="title_not_empty"),
        Index("ix_comparisons_published_at", "published_at"),
    )


class Tool(Base):
    """One side of a comparison, with the panel's and the community's verdicts on it."""

    __tablename__ = "tools"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    tagline: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    pricing: Mapped[str | None] = mapped_column(Text)
    entry_price: Mapped[str | None] = mapped_column(String(50))
    best_for: Mapped[str | None] = mapped_column(Text)
    verdict_label: Mapped[str | None] = mapped_column(String(10))
    panel_ship: Mapped[int | None] = mapped_column(Integer)
    panel_skip: Mapped[int | None] = mapped_column(Integer)
    panel_ship_pct: Mapped[int | None] = mapped_column(Integer)
    community_ship: Mapped[int | None] = mapped_column(Integer)
    community_skip: Mapped[int | None] = mapped_column(Integer)

    comparison: Mapped[Comparison] = relationship(back_populates="tools")
    reviews: Mapped[list[Review]] = relationship(
        back_populates="tool",
        order_by="Review.position",
        cascade="all, delete-orphan",
        lazy="selectin",
    )

    __table_args__ = (
        UniqueConstraint("comparison_id", "position", name="uq_tools_comparison_position"),
        CheckConstraint("position IN (0, 1)", name="position_a_or_b"),
        CheckConstraint("name <> ''", name="name_not_empty"),
        CheckConstraint(
            "verdict_label IS NULL OR " + _in("verdict_label", VERDICT_LABELS), name="verdict_label"
        ),
        CheckConstraint("panel_ship IS NULL OR panel_ship >= 0", name="panel_ship_nonneg"),
        CheckConstraint("panel_skip IS NULL OR panel_skip >= 0", name="panel_skip_nonneg"),
        CheckConstraint(
            "panel_ship_pct IS NULL OR panel_ship_pct BETWEEN 0 AND 100", name="panel_pct_range"
        ),
        CheckConstraint(
            "community_ship IS NULL OR community_ship >= 0", name="community_ship_nonneg"
        ),
        CheckConstraint(
            "community_skip IS NULL OR community_skip >= 0", name="community_skip_nonneg"
        ),
    )


class Review(Base):
    """One reviewer persona's take on one tool."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tool_id: Mapped[int] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    persona: Mapped[str | None] = mapped_column(String(20))
    score: Mapped[int | None] = mapped_column(Integer)
    verdict: Mapped[str | None] = mapped_column(String(4))
    text: Mapped[str | None] = mapped_column(Text)

    tool: Mapped[Tool] = relationship(back_populates="reviews")

    __table_args__ = (
        UniqueConstraint("tool_id", "position", name="uq_reviews_tool_position"),
        CheckConstraint("persona IS NULL OR " + _in("persona", PERSONAS), name="persona"),
        CheckConstraint("score IS NULL OR score BETWEEN 0 AND 100", name="score_range"),
        CheckConstraint("verdict IS NULL OR verdict IN ('ship', 'skip')", name="verdict"),
    )


class Subscriber(Base):
    """A newsletter address and what it agreed to."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[SubscriberStatus] = mapped_column(
        EnumText(SubscriberStatus, 20), default=SubscriberStatus.PENDING
    )
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    frequency: Mapped[Frequency] = mapped_column(EnumText(Frequency, 10), default=Frequency.WEEKLY)
    timezone: Mapped[str | None] = mapped_column(String(64))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[datetime | None]
    consent_source: Mapped[str | None] = mapped_column(String(500))
    consent_ip_hash: Mapped[str | None] = mapped_column(String(64))
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    confirmation_sent_at: Mapped[datetime | None]
    # The signup cycle a confirmation link must name: a random nonce and when the cycle began
    # (the link's signed timestamp, so a re-sent link is the same link). A new cycle starts with
    # a new pending signup or a re-signup after leaving; unsubscribing ends it (NULL).
    signup_cycle: Mapped[str | None] = mapped_column(String(32))
    signup_cycle_at: Mapped[datetime | None]
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("uq_subscribers_email_lower", func.lower(email), unique=True),
        Index("ix_subscribers_status_id", "status", "id"),
        # Migration 0011 adds the search indexes (PostgreSQL: lower(email) and lower(name) with
        # text_pattern_ops, built CONCURRENTLY; SQLite: lower(name)), which Index() here cannot
        # spell for both dialects. digest/subscriber_search.py is what they serve.
        CheckConstraint("email <> ''", name="email_not_empty"),
        CheckConstraint(_in("status", SUBSCRIBER_STATUSES), name="status"),
        CheckConstraint(_in("frequency", Frequency), name="frequency"),
        CheckConstraint("soft_bounces >= 0", name="soft_bounces_nonneg"),
    )


class Suppression(Base):
    """An address that must never be mailed or re-added, kept only as a hash."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[SuppressionReason] = mapped_column(EnumText(SuppressionReason, 20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint(_in("reason", SuppressionReason), name="reason"),)


class Digest(Base):
    """One mailing: its frozen items, its state, and (for beat) the slot that fired it."""

    __tablename__ = "digests"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[DigestKind] = mapped_column(EnumText(DigestKind, 10))
    status: Mapped[DigestStatus] = mapped_column(
        EnumText(DigestStatus, 10), default=DigestStatus.PLANNED
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    # Unique per weekly slot and timezone wave: two beats cannot create the same digest twice.
    slot_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    # A weekly wave's edition: the slot's local date and time, shared by every timezone wave of
    # it (digest.schedule.edition_of); NULL for any other digest. digest.editions reads it.
    edition: Mapped[str | None] = mapped_column(String(40), index=True)
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    subject: Mapped[str | None] = mapped_column(String(300))
    preheader: Mapped[str | None] = mapped_column(String(300))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    renders: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    items: Mapped[list[DigestItem]] = relationship(
        back_populates="digest", order_by="DigestItem.rank", cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint(_in("kind", DIGEST_KINDS), name="kind"),
        CheckConstraint(_in("status", DIGEST_STATUSES), name="status"),
    )


class EditionReview(Base):
    """An operator's review of one weekly edition (digest/edition_review.py), before it is sent.

    Keyed by the edition (`digests.edition`, the slot's local date and time); every wave of the
    edition reads it through its first wave, which freezes a copy in its options.
    """

    __tablename__ = "edition_reviews"

    edition: Mapped[str] = mapped_column(String(40), primary_key=True)
    pinned: Mapped[list[int]] = mapped_column(JSON, default=list)  # comparison ids, pin order
    excluded: Mapped[list[int]] = mapped_column(JSON, default=list)  # comparison ids
    note: Mapped[str | None] = mapped_column(Text)  # plain text; paragraphs split on blank lines
    subject: Mapped[str | None] = mapped_column(String(200))
    preheader: Mapped[str | None] = mapped_column(String(200))
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None]
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DigestItem(Base):
    """A comparison frozen into a digest at its rank, with the one-line reason for it."""

    __tablename__ = "digest_items"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"))
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    explanation: Mapped[str] = mapped_column(Text)
    verdict_fingerprint: Mapped[str] = mapped_column(String(64))

    digest: Mapped[Digest] = relationship(back_populates="items")
    comparison: Mapped[Comparison] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("digest_id", "rank", name="uq_digest_items_digest_rank"),
        UniqueConstraint("digest_id", "comparison_id", name="uq_digest_items_digest_comparison"),
        CheckConstraint("rank >= 1", name="rank_positive"),
    )


class DigestSegment(Base):
    """The email rendered once for one preference segment; recipients share it."""

    __tablename__ = "digest_segments"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"))
    segment_key: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(300))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    # The render's unguessable placeholder keys (digest/substitution.py); NULL for renders
    # planned before migration 0006, which used the old fixed keys.
    placeholder_nonce: Mapped[str | None] = mapped_column(String(12))
    recipients: Mapped[int] = mapped_column(Integer, default=0)

    digest: Mapped[Digest] = relationship()

    __table_args__ = (
        UniqueConstraint("digest_id", "segment_key", name="uq_digest_segments_digest_key"),
    )


class DeliveryBatch(Base):
    """Up to 1000 recipients sent in one API request; the unit of claiming and retrying."""

    __tablename__ = "delivery_batches"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"))
    segment_id: Mapped[int] = mapped_column(ForeignKey("digest_segments.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[BatchStatus] = mapped_column(
        EnumText(BatchStatus, 10), default=BatchStatus.PENDING
    )
    size: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # The batch's recipients as planned, in subscriber id order: their delivery rows are written
    # by the batch's first claim (digest/batch_recipients.py), and from then on the rows are the
    # ledger. Planning writes one array per thousand recipients instead of a thousand rows
    # (migration 0014). Deferred: only the ledger's own queries read it.
    subscriber_ids: Mapped[list[int] | None] = deferred(mapped_column(IdList, nullable=True))

    digest: Mapped[Digest] = relationship()
    segment: Mapped[DigestSegment] = relationship()

    __table_args__ = (
        UniqueConstraint("digest_id", "seq", name="uq_delivery_batches_digest_seq"),
        CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
        CheckConstraint("size BETWEEN 0 AND 1000", name="size_range"),
        Index("ix_delivery_batches_digest_status", "digest_id", "status"),
    )


class Delivery(Base):
    """One recipient of one digest: the row that makes "exactly once" checkable.

    Written when the recipient's batch is first claimed, just before its request; until then
    the recipient is an id in `DeliveryBatch.subscriber_ids`."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # No foreign keys (migrations 0003, 0004): checking a million rows against digests,
    # batches and subscribers was most of planning time. Only a batch's first claim (from the
    # ids planning stored on it, joined to subscribers) and a 413 split write these ids;
    # digests and batches are never deleted, subscribers neither (erasure keeps the row).
    digest_id: Mapped[int] = mapped_column(Id)
    batch_id: Mapped[int | None] = mapped_column(Id)
    subscriber_id: Mapped[int] = mapped_column(Id)
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[DeliveryStatus] = mapped_column(
        EnumText(DeliveryStatus, 10), default=DeliveryStatus.PENDING
    )
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("digest_id", "subscriber_id", name="uq_deliveries_digest_subscriber"),
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        # No index on batch_id (migration 0016): a batch's rows are found through its
        # array and the unique key (digest/batch_recipients.py `rows_of`). The rows whose own
        # status left pending, for counting without reading the rest (digest/ledger_counts.py).
        Index(
            "ix_deliveries_exceptions",
            "digest_id",
            "batch_id",
            "status",
            postgresql_where=text("status <> 'pending'"),
            sqlite_where=text("status <> 'pending'"),
        ),
    )


class InboundEvent(Base):
    """Every event that came in (site, files, pages, SendGrid), keyed for idempotency."""

    __tablename__ = "inbound_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)

    # One key space for every door: the same event by API and by file is still one event.
    __table_args__ = (UniqueConstraint("key", name="uq_inbound_events_key"),)


class WebhookBatch(Base):
    """A verified SendGrid webhook body, stored as received and processed by a worker."""

    __tablename__ = "webhook_batches"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    events: Mapped[int] = mapped_column(Integer, default=0)


class EmailEvent(Base):
    """One normalised SendGrid event (delivered, bounce, open, click, ...)."""

    __tablename__ = "email_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # Kept as SendGrid sent it (≤ 100 characters, else its SHA-256); not a key since migration
    # 0015: `dedupe_key` covers it (digest/webhook_events.py).
    sg_event_id: Mapped[str | None] = mapped_column(String(100))
    sg_message_id: Mapped[str | None] = mapped_column(String(200))
    # The idempotency key: 128 bits of a hash of message id, address, event, time and URL, or of
    # the sg_event_id when there is no message id (digest/webhook_events.py `dedupe_key`).
    dedupe_key: Mapped[str | None] = mapped_column(Uuid(as_uuid=False), unique=True)
    event: Mapped[str] = mapped_column(String(30))
    bounce_class: Mapped[str | None] = mapped_column(String(10))  # hard / soft
    email: Mapped[str | None] = mapped_column(String(320))
    occurred_at: Mapped[datetime]
    # Ids of an existing delivery and digest, or NULL: `digest.webhook_events.link` sets only ids
    # it read in the same transaction, and neither is ever deleted. No foreign keys (migration
    # 0013): re-checking each row cost the webhook's INSERT a fifth of its time.
    delivery_id: Mapped[int | None] = mapped_column(Id)
    digest_id: Mapped[int | None] = mapped_column(Id)
    url: Mapped[str | None] = mapped_column(Text)
    machine: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_email_events_digest_event", "digest_id", "event"),
        Index("ix_email_events_delivery_id", "delivery_id"),
        # Migration 0011: the events that change the list, by time (digest/audience.py).
        Index(
            "ix_email_events_list_changes",
            "occurred_at",
            postgresql_where=text("event IN ('bounce', 'spamreport')"),
            sqlite_where=text("event IN ('bounce', 'spamreport')"),
        ),
    )


class Operator(Base):
    """A person who may sign in to the console (`digest operators add`).

    `session_key` is in every session cookie: removing the operator (the row goes) or signing
    out (the key is replaced) ends every session signed with it.
    """

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(200))
    session_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One thing an operator did, and when: who (their address at the time), what, to what."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)


class ReaderVote(Base):
    """A reader's Ship/Skip verdict on one tool of one comparison, cast from a digest's link.

    One row per (subscriber, comparison, tool); a new choice replaces the old one. Erasure keeps
    the row for the tally but forgets the person (`subscriber_id` and `digest_id` set NULL).
    """

    __tablename__ = "reader_votes"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id", ondelete="SET NULL"))
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"))
    tool_position: Mapped[int] = mapped_column(Integer)
    choice: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint(
            "subscriber_id", "comparison_id", "tool_position", name="uq_reader_votes_reader_tool"
        ),
        CheckConstraint("tool_position IN (0, 1)", name="tool_position_a_or_b"),
        CheckConstraint("choice IN ('ship', 'skip')", name="choice"),
        Index("ix_reader_votes_comparison", "comparison_id", "tool_position", "choice"),
    )


class SiteEvent(Base):
    """The outbox of events for the site (`reader_vote.cast`): written in the transaction that
    records the verdict, delivered at least once by a worker, marked only after a 2xx."""

    __tablename__ = "site_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_site_events_delivered_at", "delivered_at"),)


class ListImport(Base):
    """A subscriber list uploaded in the console, imported by a worker in chunks.

    Counts and `lines_done` are written in the transaction of each chunk's rows, so a worker
    that dies resumes exactly where the last commit left off (README "Console", Lists).
    `errors` holds the first bad rows as [line, field, message]; `bad` counts them all.
    """

    __tablename__ = "list_imports"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    actor: Mapped[str] = mapped_column(String(320))
    filename: Mapped[str] = mapped_column(String(200))
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ListImportStatus] = mapped_column(
        EnumText(ListImportStatus, 10), default=ListImportStatus.QUEUED
    )
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    lines_total: Mapped[int] = mapped_column(Integer, default=0)
    lines_done: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    existing: Mapped[int] = mapped_column(Integer, default=0)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
    bad: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(_in("status", ListImportStatus), name="status"),
        Index("ix_list_imports_status_updated_at", "status", "updated_at"),
    )


class ListImportPart(Base):
    """One piece (≤ 1 MiB) of an uploaded CSV, in the database so any worker can read it;
    deleted when its import finishes (it holds addresses)."""

    __tablename__ = "list_import_parts"

    import_id: Mapped[int] = mapped_column(
        ForeignKey("list_imports.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class Erasure(Base):
    """That one erasure happened, and when: nothing else (no subscriber id, no address hash).

    The audience page counts erasures per week from it; the subscriber row's `updated_at` moves
    on, and a suppression that was already there keeps its first `created_at`.
    """

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
