"""Email addresses as keys, and the suppression list: the one place that reads or writes it.

A suppression outlives the subscriber row ("delete me" erases the address), so it keeps only
`email_hash(address)`. Every reader asks through `is_suppressed` / `suppressed_hashes` (or, in a
PostgreSQL query, `suppression_held_sql`), and every writer goes through `suppress`, so the hash
and the ranking of reasons are written once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, exists, func, null, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from digest.key_lists import among, key_parts
from schema.models import Suppression
from schema.statuses import SuppressionReason

# A stronger reason replaces a weaker one, never the reverse: an erasure (`deleted`) is what makes
# webhook processing redact later events, and a complaint must never soften to a bounce.
REASON_RANK = {
    SuppressionReason.UNSUBSCRIBED: 1,
    SuppressionReason.BOUNCED: 2,
    SuppressionReason.COMPLAINED: 3,
    SuppressionReason.DELETED: 4,
}
# Addresses whose hash PostgreSQL computes exactly as `email_hash` does: printable ASCII, no
# spaces (strip() is a no-op, lower() agrees). Anything else is hashed in Python.
PLAIN_ADDRESS = "^[!-~]+$"
CHUNK = 1000


def email_hash(address: str) -> str:
    """SHA-256 hex of the stripped, lower-cased address: how a suppression remembers an address.

    Every writer and reader of `suppressions.email_hash` must use this function (or, inside a
    PostgreSQL query, `suppression_held_sql`, which computes the same for plain addresses).
    """
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


def is_suppressed(session: Session, address: str) -> bool:
    """Does a suppression (any reason) hold this address?"""
    key = email_hash(address)
    return session.scalar(select(Suppression.id).where(Suppression.email_hash == key)) is not None


@dataclass(frozen=True)
class SuppressionRecord:
    """Why an address is suppressed, and since when (the entry's first date: a stronger reason
    replaces a weaker one in place)."""

    reason: SuppressionReason
    since: datetime


@dataclass(frozen=True)
class ReasonCount:
    reason: SuppressionReason
    addresses: int


def suppression_of(session: Session, address: str) -> SuppressionRecord | None:
    """The suppression holding this address, looked up by its hash (the list keeps no address),
    or None. For the console's "is this address suppressed, and why?"."""
    row = session.execute(
        select(Suppression.reason, Suppression.created_at).where(
            Suppression.email_hash == email_hash(address)
        )
    ).first()
    return None if row is None else SuppressionRecord(row.reason, row.created_at)


def suppression_counts(session: Session) -> list[ReasonCount]:
    """How many addresses each reason holds, every reason listed (zero included), strongest
    last as in REASON_RANK. One GROUP BY over the list (one row per address)."""
    rows = session.execute(select(Suppression.reason, func.count()).group_by(Suppression.reason))
    counted = {reason: count for reason, count in rows}
    return [ReasonCount(reason, int(counted.get(reason, 0))) for reason in REASON_RANK]


def suppressed_hashes(
    session: Session, hashes: Iterable[str], *, reason: SuppressionReason | None = None
) -> set[str]:
    """Which of these address hashes a suppression holds (of `reason`, if given).

    One query on PostgreSQL (the hashes travel as one array), a thousand hashes a query on
    SQLite.
    """
    found: set[str] = set()
    for part in key_parts(session, hashes):
        query = select(Suppression.email_hash).where(among(session, Suppression.email_hash, part))
        if reason is not None:
            query = query.where(Suppression.reason == reason)
        found.update(session.scalars(query))
    return found


def suppression_held_sql(email_column: Any) -> ColumnElement[Any]:
    """PostgreSQL only: an expression that is true/false when a suppression holds/doesn't hold
    the address in `email_column`, hashed in the database as `email_hash` does, and NULL for an
    address that is not plain ASCII (hash those in Python with `suppressed_hashes`)."""
    hashed = func.encode(func.sha256(func.convert_to(func.lower(email_column), "UTF8")), "hex")
    held = exists().where(Suppression.email_hash == hashed)
    return case((email_column.regexp_match(PLAIN_ADDRESS), held), else_=null())


def suppress(
    session: Session,
    address_or_hash: str,
    reason: SuppressionReason,
    *,
    now: datetime | None = None,
) -> None:
    """Suppress one address (or an `email_hash` of it), upgrading a weaker reason."""
    suppress_many(session, {_as_hash(address_or_hash): reason}, now=now)


def suppress_many(
    session: Session,
    wanted: Mapping[str, SuppressionReason],
    *,
    now: datetime | None = None,
) -> None:
    """Suppress several address hashes at once, each row locked, upgrading weaker reasons.

    Hashes are handled in sorted order so that concurrent writers lock rows in the same order.
    """
    hashes = sorted(wanted)
    existing: dict[str, Suppression] = {}
    for start in range(0, len(hashes), CHUNK):
        part = hashes[start : start + CHUNK]
        for row in session.scalars(
            select(Suppression).where(Suppression.email_hash.in_(part)).with_for_update()
        ):
            existing[row.email_hash] = row
    for key in hashes:
        reason = SuppressionReason(wanted[key])
        row = existing.get(key)
        if row is None:
            extra = {"created_at": now} if now is not None else {}
            session.add(Suppression(email_hash=key, reason=reason, **extra))
        elif REASON_RANK[reason] > REASON_RANK.get(row.reason, 0):  # type: ignore[call-overload]
            row.reason = reason
    session.flush()


def stronger_reason(
    current: SuppressionReason | None, candidate: SuppressionReason
) -> SuppressionReason:
    """The reason a suppression should keep when both apply."""
    if current is None or REASON_RANK[candidate] > REASON_RANK[current]:
        return candidate
    return current


def _as_hash(address_or_hash: str) -> str:
    """An address is hashed; a 64-hex-digit string is taken as a hash already (no address is)."""
    value = address_or_hash.strip()
    if len(value) == 64 and "@" not in value and all(c in "0123456789abcdef" for c in value):
        return value
    return email_hash(value)
