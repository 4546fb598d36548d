"""Finding a subscriber, and what the console shows about one (`/console/subscribers…`).

Search is a prefix of the address or of the name, case-insensitive, served by an index on a
million rows (migration 0012): on PostgreSQL `lower(email) LIKE 'ada%'` and the same for the
name, each a range scan of a `text_pattern_ops` btree (a BitmapOr of the two), whatever the
database's collation; on SQLite a byte-wise range on `lower(…)` expression indexes. Wildcards
typed by the operator (`%`, `_`, `\\`) are escaped, so they match themselves.

Results are newest first and paginated by key (`id < before`, or `id > after` for the page
before), never by OFFSET: page 400 costs what page 1 costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from digest.addresses import SuppressionRecord, suppression_of
from schema.models import Subscriber
from schema.statuses import SubscriberStatus

PAGE_SIZE = 50
MAX_QUERY = 320
_TOP = chr(0x10FFFF)  # sorts after every character: the end of a prefix's range


@dataclass(frozen=True)
class SubscriberLine:
    """One search result."""

    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    created_at: datetime


@dataclass(frozen=True)
class SearchPage:
    """One page of results and the keys of its neighbours (None: there is none)."""

    lines: list[SubscriberLine]
    query: str
    status: SubscriberStatus | None
    older: int | None  # `before=` of the next (older) page
    newer: int | None  # `after=` of the previous (newer) page


@dataclass(frozen=True)
class Profile:
    """A subscriber as the console shows it: status, preferences and the consent record."""

    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    categories: tuple[str, ...]
    frequency: str
    timezone: str | None
    paused: bool
    created_at: datetime
    consent_at: datetime | None
    consent_source: str | None
    consent_ip_hash: str | None
    confirmation_sent_at: datetime | None
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    soft_bounces: int
    suppression: SuppressionRecord | None


def clean_query(raw: str) -> str:
    """What is searched for: trimmed, lower-cased, at most MAX_QUERY characters; "" when it
    holds a character no stored address or name can (NUL, controls), which matches nothing."""
    query = raw.strip()[:MAX_QUERY].lower()
    return query if query.isprintable() else ""


def _like_prefix(value: str) -> str:
    """`value` as a LIKE pattern matching itself at the start (PostgreSQL's escape is `\\`)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def prefix_of(session: Session, column: Any, prefix: str) -> ColumnElement[bool]:
    """`lower(column)` starts with `prefix`, written so that the search index serves it."""
    lowered = func.lower(column)
    if session.get_bind().dialect.name == "postgresql":
        return lowered.like(_like_prefix(prefix))
    return and_(lowered >= prefix, lowered < prefix + _TOP)


def search_statement(
    session: Session,
    wanted: str,
    *,
    status: SubscriberStatus | None = None,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE + 1,
) -> Select[Any]:
    """The search's one query (the benchmark and the query-plan test run it too): address or
    name starting with `wanted` (a cleaned query; "" lists everyone), newest first, or oldest
    first after `after` (the page before, read backwards)."""
    statement = select(
        Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.created_at
    )
    if wanted:
        statement = statement.where(
            or_(
                prefix_of(session, Subscriber.email, wanted),
                prefix_of(session, Subscriber.name, wanted),
            )
        )
    if status is not None:
        statement = statement.where(Subscriber.status == status)
    if after is not None:
        return statement.where(Subscriber.id > after).order_by(Subscriber.id).limit(limit)
    if before is not None:
        statement = statement.where(Subscriber.id < before)
    return statement.order_by(Subscriber.id.desc()).limit(limit)


def search_subscribers(
    session: Session,
    query: str = "",
    *,
    status: SubscriberStatus | None = None,
    before: int | None = None,
    after: int | None = None,
    per_page: int = PAGE_SIZE,
) -> SearchPage:
    """Subscribers whose address or name starts with `query` (all of them when it is empty),
    of `status` if given, newest first, one page: older than `before` or newer than `after`."""
    wanted = clean_query(query)
    if query.strip() and not wanted:  # a control character: nothing stored can match
        return SearchPage([], query.strip()[:MAX_QUERY], status, None, None)
    statement = search_statement(
        session, wanted, status=status, before=before, after=after, limit=per_page + 1
    )
    rows = [SubscriberLine(*row) for row in session.execute(statement)]
    more = len(rows) > per_page
    rows = rows[:per_page]
    if after is not None:
        rows.reverse()
        older, newer = (rows[-1].id if rows else None), (rows[0].id if more and rows else None)
    else:
        older = rows[-1].id if more else None
        newer = rows[0].id if before is not None and rows else None
    return SearchPage(rows, wanted, status, older, newer)


def subscriber_profile(session: Session, subscriber_id: int) -> Profile | None:
    """One subscriber by id, with the suppression (if any) that holds their address."""
    row = session.get(Subscriber, subscriber_id)
    if row is None:
        return None
    erased = row.status == SubscriberStatus.DELETED
    return Profile(
        id=row.id,
        email=row.email,
        name=row.name,
        status=row.status,
        categories=tuple(row.categories or ()),
        frequency=str(row.frequency),
        timezone=row.timezone,
        paused=row.paused,
        created_at=row.created_at,
        consent_at=row.consent_at,
        consent_source=row.consent_source,
        consent_ip_hash=row.consent_ip_hash,
        confirmation_sent_at=row.confirmation_sent_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        soft_bounces=row.soft_bounces,
        suppression=None if erased else suppression_of(session, row.email),
    )
