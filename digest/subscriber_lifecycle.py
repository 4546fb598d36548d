"""A subscriber after signing up: confirm, change preferences, leave, export, erase.

Plain functions over a `Session`; the caller owns the transaction and queues emails only after it
commits. Outcomes are `StrEnum`s (members equal their strings) so a caller's typo fails at import.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from digest import data_export, privacy
from digest.addresses import is_suppressed
from digest.signup_cycles import same_cycle
from digest.signup_fields import clean_categories, clean_frequency, clean_timezone
from digest.tokens import ConfirmClaim, DataClaim, address_tag
from schema.models import Subscriber
from schema.statuses import SubscriberStatus


class ConfirmationState(StrEnum):
    """What the confirmation page (GET) shows before anything changes."""

    PENDING = "pending"  # the button can confirm
    ALREADY = "already"  # this cycle is confirmed
    UNAVAILABLE = "unavailable"


class ConfirmOutcome(StrEnum):
    """What `confirm` did."""

    CONFIRMED = "confirmed"  # queue the welcome email
    ALREADY = "already"  # active, same cycle: a second click
    UNAVAILABLE = "unavailable"


class UnsubscribeOutcome(StrEnum):
    """What `unsubscribe` did."""

    UNSUBSCRIBED = "unsubscribed"  # was active: a goodbye may follow
    STOPPED = "stopped"  # was pending: no goodbye
    ALREADY = "already"  # nothing left to stop
    MISSING = "missing"


def _confirmable(
    session: Session, subscriber: Subscriber | None, claim: ConfirmClaim
) -> ConfirmationState:
    """`pending`, `already` or `unavailable` for this subscriber and link (shared by both)."""
    if subscriber is None or not same_cycle(subscriber, claim):
        return ConfirmationState.UNAVAILABLE
    if subscriber.status == SubscriberStatus.ACTIVE:
        return ConfirmationState.ALREADY
    if subscriber.status != SubscriberStatus.PENDING or is_suppressed(session, subscriber.email):
        return ConfirmationState.UNAVAILABLE
    return ConfirmationState.PENDING


def confirmation_state(session: Session, claim: ConfirmClaim) -> ConfirmationState:
    """What `confirm` would answer, without changing anything (for the GET page)."""
    subscriber = session.get(Subscriber, claim.subscriber_id)
    return ConfirmationState(_confirmable(session, subscriber, claim))


def confirm(session: Session, claim: ConfirmClaim, now: datetime | None = None) -> ConfirmOutcome:
    """Activate a pending subscriber, if the link names its current signup cycle.

    Idempotent: a second click answers ALREADY. UNAVAILABLE: missing; another cycle (a link
    issued before an unsubscribe or erasure); unsubscribed since; deleted, bounced, complained
    or suppressed.
    """
    now = now or datetime.now(UTC)
    subscriber = session.get(Subscriber, claim.subscriber_id, with_for_update=True)
    state = _confirmable(session, subscriber, claim)
    if state != ConfirmationState.PENDING:
        return ConfirmOutcome(state)
    assert subscriber is not None  # _confirmable answers UNAVAILABLE for a missing row
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = now
    subscriber.paused = False
    subscriber.updated_at = now
    return ConfirmOutcome.CONFIRMED


def unsubscribe(
    session: Session, subscriber_id: int, now: datetime | None = None
) -> UnsubscribeOutcome:
    """Stop all mail to a subscriber. Idempotent."""
    now = now or datetime.now(UTC)
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return UnsubscribeOutcome.MISSING
    if subscriber.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        return UnsubscribeOutcome.ALREADY
    was_active = subscriber.status == SubscriberStatus.ACTIVE
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = now
    subscriber.updated_at = now
    subscriber.signup_cycle = None  # every confirmation link issued so far is dead
    subscriber.signup_cycle_at = None
    return UnsubscribeOutcome.UNSUBSCRIBED if was_active else UnsubscribeOutcome.STOPPED


def get_subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    return session.get(Subscriber, subscriber_id)


def data_link_subject(session: Session, claim: DataClaim) -> Subscriber | None:
    """The subscriber a data link names, if not erased and still at the address it was sent to.

    Erasure replaces the address, so a link used to delete (or issued before an operator's
    erasure) names nobody afterwards.
    """
    subscriber = session.get(Subscriber, claim.subscriber_id)
    if subscriber is None or subscriber.status == SubscriberStatus.DELETED:
        return None
    if not hmac.compare_digest(address_tag(subscriber.email), claim.address_tag):
        return None
    return subscriber


def update_preferences(
    session: Session,
    subscriber_id: int,
    *,
    categories: object,
    frequency: object,
    timezone: object,
    paused: bool,
    now: datetime | None = None,
) -> Subscriber:
    """Change what and when a subscriber receives; InvalidField names a bad field, nothing saved.

    A deleted subscriber cannot be edited (LookupError). Changing preferences never re-subscribes.
    """
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None or subscriber.status == SubscriberStatus.DELETED:
        raise LookupError(subscriber_id)
    cleaned_categories = clean_categories(categories, session)
    cleaned_frequency = clean_frequency(frequency)
    cleaned_timezone = clean_timezone(timezone)
    subscriber.categories = cleaned_categories
    subscriber.frequency = cleaned_frequency  # type: ignore[assignment]
    subscriber.timezone = cleaned_timezone
    subscriber.paused = bool(paused)
    subscriber.updated_at = now or datetime.now(UTC)
    return subscriber


def export_data(session: Session, subscriber_id: int) -> dict[str, Any] | None:
    """Everything stored about one subscriber; see `digest.data_export.export_data` (a dict
    because it IS the exported JSON document)."""
    return data_export.export_data(session, subscriber_id)


def delete_subscriber(session: Session, subscriber_id: int, now: datetime | None = None) -> bool:
    """Erase a subscriber everywhere ("delete me"); see `digest.privacy.erase_subscriber`.

    Returns False when there was nothing left to erase.
    """
    return privacy.erase_subscriber(session, subscriber_id, now).erased
