"""Signup cycles: which confirmation link may confirm a pending subscriber, and when to resend.

A cycle starts with a new pending signup (or a re-signup after leaving): a random nonce that the
confirmation link names, and the time it began (the link's signed timestamp, so a re-sent link is
the same link). Unsubscribing or erasure ends it, so no link issued before can confirm.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.addresses import is_suppressed
from digest.settings import get_settings
from digest.tokens import CONFIRM_MAX_AGE, ConfirmClaim, SignupCycle
from schema.models import Subscriber
from schema.statuses import SubscriberStatus


def new_cycle(now: datetime) -> dict[str, Any]:
    """Columns that start a signup cycle: the nonce its confirmation link must name."""
    return {"signup_cycle": secrets.token_urlsafe(16), "signup_cycle_at": now}


def cycle_is_live(nonce: str | None, started_at: datetime | None, now: datetime) -> bool:
    """A cycle whose confirmation link still works (it expires CONFIRM_MAX_AGE after the start)."""
    if not nonce or started_at is None:
        return False
    return started_at > now - timedelta(seconds=CONFIRM_MAX_AGE)


def same_cycle(subscriber: Subscriber, claim: ConfirmClaim) -> bool:
    """Does the link name the subscriber's current cycle? (Constant-time comparison.)"""
    current = subscriber.signup_cycle
    return current is not None and hmac.compare_digest(current.encode(), claim.cycle.encode())


def current_cycle(session: Session, subscriber_id: int) -> SignupCycle | None:
    """The live signup cycle of a pending subscriber (what its confirmation link names)."""
    row = session.execute(
        select(Subscriber.status, Subscriber.signup_cycle, Subscriber.signup_cycle_at).where(
            Subscriber.id == subscriber_id
        )
    ).first()
    if row is None or row.status != SubscriberStatus.PENDING:
        return None
    if not cycle_is_live(row.signup_cycle, row.signup_cycle_at, datetime.now(UTC)):
        return None
    return SignupCycle(row.signup_cycle, row.signup_cycle_at)


def end_cycle(session: Session, subscriber_id: int) -> None:
    """No confirmation link issued so far may confirm this subscriber (unsubscribe, erasure)."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(signup_cycle=None, signup_cycle_at=None)
        .execution_options(synchronize_session=False)
    )


def claim_confirmation(session: Session, subscriber_id: int, now: datetime) -> bool:
    """Atomically take the right to send a confirmation: at most one per address per interval."""
    cutoff = now - timedelta(seconds=get_settings().confirmation_resend_seconds)
    claimed = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .where(
            (Subscriber.confirmation_sent_at.is_(None))
            | (Subscriber.confirmation_sent_at <= cutoff)
        )
        .values(confirmation_sent_at=now)
        .execution_options(synchronize_session=False)
    )
    return claimed.rowcount == 1


def release_confirmation(session: Session, subscriber_id: int) -> None:
    """Give the confirmation claim back when the email could not be queued, so a retry sends."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(confirmation_sent_at=None)
        .execution_options(synchronize_session=False)
    )


class ResendOutcome(StrEnum):
    """What an operator's "resend confirmation" did; only QUEUE means: queue the task."""

    QUEUE = "queue"
    NOT_PENDING = "not-pending"  # active, unsubscribed, bounced, complained, erased
    SUPPRESSED = "suppressed"
    TOO_SOON = "too-soon"  # one went out within DIGEST_CONFIRMATION_RESEND_SECONDS
    MISSING = "missing"


def resend_confirmation(
    session: Session, subscriber_id: int, now: datetime | None = None
) -> ResendOutcome:
    """The console's "resend confirmation", under the public signup's rules: pending only, never
    to a suppressed address, at most one per resend interval (`claim_confirmation`). A live
    cycle keeps its link (the owner's earlier email still works); an expired one starts a new
    cycle, as a new signup would. The caller commits, then queues `digest.send_confirmation`
    (and gives the claim back with `release_confirmation` if it cannot)."""
    now = now or datetime.now(UTC)
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return ResendOutcome.MISSING
    if subscriber.status != SubscriberStatus.PENDING:
        return ResendOutcome.NOT_PENDING
    if is_suppressed(session, subscriber.email):
        return ResendOutcome.SUPPRESSED
    if not cycle_is_live(subscriber.signup_cycle, subscriber.signup_cycle_at, now):
        cycle = new_cycle(now)
        subscriber.signup_cycle = cycle["signup_cycle"]
        subscriber.signup_cycle_at = cycle["signup_cycle_at"]
        session.flush()
    if not claim_confirmation(session, subscriber_id, now):
        return ResendOutcome.TOO_SOON
    return ResendOutcome.QUEUE
