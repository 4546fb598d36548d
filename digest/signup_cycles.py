"""Signup cycles: which confirmation link may confirm a pending subscriber, and when to resend.

A cycle starts with a new pending signup (or a re-signup after leaving): a random nonce that the
confirmation link names, and the time it began (the link's signed timestamp, so a re-sent link is
the same link). Unsubscribing or erasure ends it, so no link issued before can confirm.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

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
