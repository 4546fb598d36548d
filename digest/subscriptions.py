"""Signing up: record a signup as pending (double opt-in) and say whether to send a confirmation.

Plain functions over a `Session`; the caller owns the transaction and queues emails only after
it commits (so a worker never looks for a row that is not there yet). Nothing here reveals to the
caller's client whether an address was already known: `subscribe` reports what happened so that
the web layer can decide what to *queue*, never what to *answer*.

The rest of a subscriber's life lives beside this module: the fields and their rules in
`digest.signup_fields`, signup cycles and confirmation claims in `digest.signup_cycles`,
confirm / unsubscribe / preferences / export / erase in `digest.subscriber_lifecycle`, and every
INSERT of a new subscriber row in `digest.subscriber_rows`. Their names stay importable from here
for the callers written before the split (the web pages, the planner).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from digest.addresses import email_hash, is_suppressed
from digest.privacy import deleted_placeholder
from digest.signup_cycles import (
    claim_confirmation,
    current_cycle,
    cycle_is_live,
    end_cycle,
    new_cycle,
    release_confirmation,
)
from digest.signup_fields import (
    FREQUENCIES,
    KNOWN_CATEGORIES,
    MAX_CATEGORIES,
    MAX_NAME,
    InvalidField,
    Signup,
    available_categories,
    clean_categories,
    clean_frequency,
    clean_name,
    clean_timezone,
    ip_hash,
    make_signup,
    normalise_email,
    split_categories,
    timezone_names,
)
from digest.subscriber_lifecycle import (
    ConfirmationState,
    ConfirmOutcome,
    UnsubscribeOutcome,
    confirm,
    confirmation_state,
    data_link_subject,
    delete_subscriber,
    export_data,
    get_subscriber,
    unsubscribe,
    update_preferences,
)
from digest.subscriber_rows import NEW_SUBSCRIBER_COLUMNS, insert_signup, insert_signups
from schema.models import Subscriber
from schema.statuses import SubscriberStatus

__all__ = [  # re-exported for callers written before the split (see the module docstring)
    "FREQUENCIES",
    "KNOWN_CATEGORIES",
    "MAX_CATEGORIES",
    "MAX_NAME",
    "NEW_SUBSCRIBER_COLUMNS",
    "ConfirmOutcome",
    "ConfirmationState",
    "Consent",
    "InvalidField",
    "Signup",
    "SubscribeOutcome",
    "SubscribeResult",
    "UnsubscribeOutcome",
    "available_categories",
    "clean_categories",
    "clean_frequency",
    "clean_name",
    "clean_timezone",
    "confirm",
    "confirmation_state",
    "current_cycle",
    "cycle_is_live",
    "data_link_subject",
    "delete_subscriber",
    "deleted_placeholder",
    "email_hash",
    "end_cycle",
    "export_data",
    "get_subscriber",
    "ip_hash",
    "is_suppressed",
    "make_signup",
    "new_cycle",
    "normalise_email",
    "release_confirmation",
    "split_categories",
    "subscribe",
    "subscribe_many",
    "subscribe_new",
    "subscribe_rest",
    "timezone_names",
    "unsubscribe",
    "update_preferences",
]


class SubscribeOutcome(StrEnum):
    """What `subscribe` did with one signup (never told to the client)."""

    CREATED = "created"  # a new pending row
    PENDING = "pending"  # already pending: same or renewed cycle
    RESUBSCRIBED = "resubscribed"  # had unsubscribed: pending again
    ACTIVE = "active"  # already subscribed: nothing changes
    SUPPRESSED = "suppressed"  # a suppression holds the address: nothing stored
    BLOCKED = "blocked"  # bounced, complained, deleted (or deleted meanwhile)


@dataclass(frozen=True)
class SubscribeResult:
    """What `subscribe` did. `send_confirmation` is True when the caller must queue the email."""

    outcome: SubscribeOutcome
    subscriber_id: int | None = None
    send_confirmation: bool = False


@dataclass(frozen=True)
class Consent:
    """Where and from which (hashed) IP a signup came; recorded with the subscriber."""

    source: str
    ip_hash: str | None


def _consent(consent: Consent, now: datetime) -> dict[str, Any]:
    return {
        "consent_at": now,
        "consent_source": consent.source[:500],
        "consent_ip_hash": consent.ip_hash,
    }


def _preferences(signup: Signup) -> dict[str, Any]:
    return {
        "name": signup.name,
        "categories": signup.categories,
        "frequency": signup.frequency,
        "timezone": signup.timezone,
    }


def _new_row(signup: Signup, consent: Consent, now: datetime) -> dict[str, Any]:
    """Every column of a new pending subscriber (NEW_SUBSCRIBER_COLUMNS)."""
    return {
        "email": signup.email,
        "status": SubscriberStatus.PENDING,
        "paused": False,
        "soft_bounces": 0,
        "confirmation_sent_at": now,
        "created_at": now,
        "updated_at": now,
        **new_cycle(now),
        **_preferences(signup),
        **_consent(consent, now),
    }


def subscribe(
    session: Session,
    signup: Signup,
    *,
    source: str,
    ip_hash: str | None,
    now: datetime | None = None,
) -> SubscribeResult:
    """Record a signup as pending (double opt-in) and say whether to send a confirmation.

    New address: a pending row with the consent record and a new signup cycle. Pending with a
    live cycle: nothing stored changes (a stranger may post anyone's address): the same
    confirmation, same link, is sent again if none went out in the resend interval. Pending
    without a live cycle (its link expired, or it was imported): a new cycle with these details,
    as a new signup. Unsubscribed: a new cycle and a new double opt-in. Active, bounced,
    complained: nothing changes. Suppressed (deleted, complained, hard-bounced): nothing is
    stored or sent.
    """
    now = now or datetime.now(UTC)
    consent = Consent(source, ip_hash)
    new_id = insert_signup(session, _new_row(signup, consent, now))
    if new_id is not None:
        return SubscribeResult(SubscribeOutcome.CREATED, new_id, send_confirmation=True)
    if is_suppressed(session, signup.email):
        return SubscribeResult(SubscribeOutcome.SUPPRESSED)
    return _known_address(session, signup, consent, now)


def _known_address(
    session: Session, signup: Signup, consent: Consent, now: datetime
) -> SubscribeResult:
    """`subscribe` for an address that already has a row (see there for each status)."""
    # Both sides lowered by the database, so the lookup agrees with the unique index on
    # lower(email) (SQLite's lower() folds ASCII only; PostgreSQL's folds Unicode).
    lookup = select(
        Subscriber.id, Subscriber.status, Subscriber.signup_cycle, Subscriber.signup_cycle_at
    ).where(func.lower(Subscriber.email) == func.lower(signup.email))
    row = session.execute(lookup).first()
    if row is None:  # deleted between the two statements: treat like a suppressed address
        return SubscribeResult(SubscribeOutcome.BLOCKED)
    subscriber_id, status, cycle, cycle_at = row
    renewed = {**new_cycle(now), **_preferences(signup), **_consent(consent, now)}
    if status == SubscriberStatus.PENDING:
        if not cycle_is_live(cycle, cycle_at, now):  # no live link to invalidate: a new signup
            _update(session, subscriber_id, SubscriberStatus.PENDING, updated_at=now, **renewed)
        # A live cycle: the owner's link stays valid and nothing submitted is overwritten.
        claimed = claim_confirmation(session, subscriber_id, now)
        return SubscribeResult(SubscribeOutcome.PENDING, subscriber_id, claimed)
    if status == SubscriberStatus.UNSUBSCRIBED:
        _update(
            session,
            subscriber_id,
            None,
            status=SubscriberStatus.PENDING,
            paused=False,
            confirmed_at=None,
            unsubscribed_at=None,
            updated_at=now,
            **renewed,
        )
        claimed = claim_confirmation(session, subscriber_id, now)
        return SubscribeResult(SubscribeOutcome.RESUBSCRIBED, subscriber_id, claimed)
    if status == SubscriberStatus.ACTIVE:
        return SubscribeResult(SubscribeOutcome.ACTIVE, subscriber_id)
    return SubscribeResult(SubscribeOutcome.BLOCKED, subscriber_id)  # bounced, complained, deleted


def _update(
    session: Session, subscriber_id: int, only_if: SubscriberStatus | None, **values: Any
) -> None:
    """UPDATE one subscriber row (if still in `only_if`, when given), bypassing the ORM."""
    statement = update(Subscriber).where(Subscriber.id == subscriber_id)
    if only_if is not None:
        statement = statement.where(Subscriber.status == only_if)
    session.execute(statement.values(**values).execution_options(synchronize_session=False))


def subscribe_many(
    session: Session,
    signups: Sequence[tuple[Signup, Consent]],
    now: datetime | None = None,
) -> list[SubscribeResult]:
    """`subscribe` for several signups in one transaction, results in the same order.

    The common case, new unsuppressed addresses, costs one INSERT for the lot (it leaves out
    suppressed and known addresses); the rest (known, suppressed or repeated addresses) go
    through `subscribe` one by one. Pass
    the signups sorted by address so that concurrent transactions lock rows in the same order.
    """
    now = now or datetime.now(UTC)
    created = subscribe_new(session, signups, now)
    return subscribe_rest(session, signups, created, now)


def subscribe_new(
    target: Session | Connection, signups: Sequence[tuple[Signup, Consent]], now: datetime
) -> list[SubscribeResult | None]:
    """`subscribe_many`'s first step alone: ONE INSERT of the new, unsuppressed addresses (the
    first signup of each), each row whole. On a connection of `statement_scope` that statement
    is its own transaction: the batched web writer commits its new addresses in one round trip.
    None for each signup it left alone (known, suppressed, repeated): see `subscribe_rest`."""
    results: list[SubscribeResult | None] = [None] * len(signups)
    first: dict[str, int] = {}  # lower-cased address -> the first signup of it in this batch
    for index, (signup, _) in enumerate(signups):
        first.setdefault(signup.email.lower(), index)
    rows = [_new_row(*signups[index], now) for index in first.values()]
    for subscriber_id, email in insert_signups(target, rows):
        results[first[email.lower()]] = SubscribeResult(
            SubscribeOutcome.CREATED, subscriber_id, send_confirmation=True
        )
    return results


def subscribe_rest(
    session: Session,
    signups: Sequence[tuple[Signup, Consent]],
    created: list[SubscribeResult | None],
    now: datetime,
) -> list[SubscribeResult]:
    """`subscribe` for each signup `subscribe_new` left alone (None in `created`), in order."""
    results = list(created)
    for index, (signup, consent) in enumerate(signups):
        if results[index] is None:  # already known, or a second signup of one address
            results[index] = subscribe(
                session, signup, source=consent.source, ip_hash=consent.ip_hash, now=now
            )
    return results  # type: ignore[return-value]
