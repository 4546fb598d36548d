"""Subscribers' side of the service: sign up, confirm, change preferences, leave, export, erase.

Plain functions over a `Session`; the caller owns the transaction and queues emails only after
it commits (so a worker never looks for a row that is not there yet). Nothing here reveals to the
caller's client whether an address was already known: `subscribe` reports what happened so that
the web layer can decide what to *queue*, never what to *answer*.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from digest import privacy
from digest.addresses import email_hash  # the one suppression hash; re-exported here
from digest.privacy import deleted_placeholder  # noqa: F401  (re-exported for older callers)
from digest.settings import get_settings
from digest.tokens import CONFIRM_MAX_AGE, ConfirmClaim, DataClaim, SignupCycle, address_tag
from schema.models import Comparison, Subscriber, Suppression

# Categories a subscriber can pick before any comparison of that kind exists (the site's sections).
KNOWN_CATEGORIES = ("Design", "Developer Tools", "Productivity", "Research", "Writing")
FREQUENCIES = ("weekly", "every")
MAX_CATEGORIES = 20
MAX_NAME = 200


class InvalidField(ValueError):
    """A submitted field is unusable; `field` names it for the 422 answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Signup:
    """A validated, normalised signup request."""

    email: str
    name: str | None = None
    categories: list[str] = field(default_factory=list)
    frequency: str = "weekly"
    timezone: str | None = None


@dataclass(frozen=True)
class SubscribeResult:
    """What `subscribe` did. `send_confirmation` is True when the caller must queue the email."""

    outcome: str  # created | pending | resubscribed | active | suppressed | blocked
    subscriber_id: int | None = None
    send_confirmation: bool = False


def ip_hash(ip: str, secret: str | None = None) -> str:
    """A keyed hash of the signup IP for the consent record: provable, but not the IP itself."""
    key = (secret or get_settings().signing_key).encode()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()


def normalise_email(raw: object) -> str:
    """The address as email-validator normalises it (no DNS lookups); InvalidField otherwise."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidField("email", "an email address is required")
    if len(raw) > 320:
        raise InvalidField("email", "this email address is too long")
    return _validated(raw.strip())


@lru_cache(maxsize=1024)
def _validated(address: str) -> str:
    """Cached: a request validates its address before the rate limit and again in make_signup."""
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidField("email", str(exc)) from exc


def clean_name(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidField("name", "the name must be text")
    # One line, no control characters: the name ends up in a To: header.
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in raw).split())
    if len(name) > MAX_NAME:
        raise InvalidField("name", f"the name is longer than {MAX_NAME} characters")
    return name or None


def clean_frequency(raw: object) -> str:
    if raw is None or raw == "":
        return "weekly"
    if raw not in FREQUENCIES:
        raise InvalidField("frequency", "choose 'weekly' or 'every'")
    return str(raw)


def clean_timezone(raw: object) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > 64:
        raise InvalidField("timezone", "not an IANA time zone such as Europe/Berlin")
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidField("timezone", f"{raw!r} is not an IANA time zone") from exc
    return raw


def timezone_names() -> list[str]:
    return sorted(available_timezones())


def split_categories(raw: object) -> list[str]:
    """Categories as sent: a list (JSON, repeated form field) whose items may be comma-separated."""
    if raw is None or raw == "":
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise InvalidField("categories", "categories must be a list of names")
    names = [part.strip() for item in items for part in item.split(",")]
    return [n for n in names if n]


def clean_categories(raw: object, session: Session | None = None) -> list[str]:
    """Canonical spellings of known categories; an unknown one is an error naming the field.

    The known list answers without the database; only an unknown name makes us look at the
    categories of stored comparisons.
    """
    names = split_categories(raw)
    if len(names) > MAX_CATEGORIES:
        raise InvalidField("categories", f"at most {MAX_CATEGORIES} categories")
    if not names:
        return []
    canonical = {c.lower(): c for c in KNOWN_CATEGORIES}
    if session is not None and any(n.lower() not in canonical for n in names):
        canonical.update({c.lower(): c for c in available_categories(session)})
    unknown = [n for n in names if n.lower() not in canonical]
    if unknown:
        raise InvalidField("categories", f"unknown category {unknown[0][:100]!r}")
    return sorted({canonical[n.lower()] for n in names})


def available_categories(session: Session) -> list[str]:
    """The known categories plus every category a stored comparison has."""
    stored = session.scalars(
        select(Comparison.category).where(Comparison.category.is_not(None)).distinct()
    )
    return sorted(set(KNOWN_CATEGORIES) | {c for c in stored if c})


def make_signup(
    *,
    email: object,
    name: object = None,
    categories: object = None,
    frequency: object = None,
    timezone: object = None,
    session: Session | None = None,
) -> Signup:
    """Validate every field of a signup; the first problem raises InvalidField naming it."""
    return Signup(
        email=normalise_email(email),
        name=clean_name(name),
        categories=clean_categories(categories, session),
        frequency=clean_frequency(frequency),
        timezone=clean_timezone(timezone),
    )


def is_suppressed(session: Session, address: str) -> bool:
    return (
        session.scalar(select(Suppression.id).where(Suppression.email_hash == email_hash(address)))
        is not None
    )


def _claim_confirmation(session: Session, subscriber_id: int, now: datetime) -> bool:
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


NEW_SUBSCRIBER_COLUMNS = (
    "email",
    "name",
    "status",
    "categories",
    "frequency",
    "timezone",
    "paused",
    "soft_bounces",
    "consent_at",
    "consent_source",
    "consent_ip_hash",
    "confirmation_sent_at",
    "signup_cycle",
    "signup_cycle_at",
    "created_at",
    "updated_at",
)


def new_cycle(now: datetime) -> dict[str, Any]:
    """Columns that start a signup cycle: the nonce its confirmation link must name."""
    return {"signup_cycle": secrets.token_urlsafe(16), "signup_cycle_at": now}


def cycle_is_live(nonce: str | None, started_at: datetime | None, now: datetime) -> bool:
    """A cycle whose confirmation link still works (it expires CONFIRM_MAX_AGE after the start)."""
    if not nonce or started_at is None:
        return False
    return started_at > now - timedelta(seconds=CONFIRM_MAX_AGE)


@lru_cache(maxsize=4)
def _insert_statement(dialect: str) -> Any:
    """Built once per dialect (the signup hot path): parameters are bound at execution."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(dialect)
    table: Table = Subscriber.__table__  # Core, not ORM: no bulk-insert machinery per call
    rows = select(*(bindparam(n, type_=table.c[n].type) for n in NEW_SUBSCRIBER_COLUMNS)).where(
        ~exists().where(Suppression.email_hash == bindparam("suppression_key"))
    )
    statement = dialect_insert(table).from_select(NEW_SUBSCRIBER_COLUMNS, rows)
    return statement.on_conflict_do_nothing().returning(table.c.id)


def _insert_unless_known(session: Session, values: dict[str, Any]) -> int | None:
    """The common case in one statement: insert a new, unsuppressed address.

    INSERT … SELECT … WHERE NOT EXISTS (suppression) ON CONFLICT DO NOTHING RETURNING id: None
    when the address is suppressed or already there (including a concurrent insert of it).
    """
    statement = _insert_statement(session.get_bind().dialect.name)
    params = {**values, "suppression_key": email_hash(values["email"])}
    return session.connection().execute(statement, params).scalar()


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
    consent = {
        "consent_at": now,
        "consent_source": source[:500],
        "consent_ip_hash": ip_hash,
    }
    preferences = {
        "name": signup.name,
        "categories": signup.categories,
        "frequency": signup.frequency,
        "timezone": signup.timezone,
    }
    new_id = _insert_unless_known(
        session,
        {
            "email": signup.email,
            "status": "pending",
            "paused": False,
            "soft_bounces": 0,
            "confirmation_sent_at": now,
            "created_at": now,
            "updated_at": now,
            **new_cycle(now),
            **preferences,
            **consent,
        },
    )
    if new_id is not None:
        return SubscribeResult("created", new_id, send_confirmation=True)
    if is_suppressed(session, signup.email):
        return SubscribeResult("suppressed")
    # Both sides lowered by the database, so the lookup agrees with the unique index on
    # lower(email) (SQLite's lower() folds ASCII only; PostgreSQL's folds Unicode).
    lookup = select(
        Subscriber.id, Subscriber.status, Subscriber.signup_cycle, Subscriber.signup_cycle_at
    ).where(func.lower(Subscriber.email) == func.lower(signup.email))
    row = session.execute(lookup).first()
    if row is None:  # deleted between the two statements: treat like a suppressed address
        return SubscribeResult("blocked")
    subscriber_id, status, cycle, cycle_at = row
    if status == "pending" and cycle_is_live(cycle, cycle_at, now):
        # The owner's link stays valid and nothing they (or anyone) submitted is overwritten.
        return SubscribeResult(
            "pending", subscriber_id, _claim_confirmation(session, subscriber_id, now)
        )
    if status == "pending":  # no live link to invalidate: a new signup in all but the row
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .where(Subscriber.status == "pending")
            .values(updated_at=now, **new_cycle(now), **preferences, **consent)
            .execution_options(synchronize_session=False)
        )
        return SubscribeResult(
            "pending", subscriber_id, _claim_confirmation(session, subscriber_id, now)
        )
    if status == "unsubscribed":
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == subscriber_id)
            .values(
                status="pending",
                paused=False,
                confirmed_at=None,
                unsubscribed_at=None,
                updated_at=now,
                **new_cycle(now),
                **preferences,
                **consent,
            )
            .execution_options(synchronize_session=False)
        )
        return SubscribeResult(
            "resubscribed", subscriber_id, _claim_confirmation(session, subscriber_id, now)
        )
    if status == "active":
        return SubscribeResult("active", subscriber_id)
    return SubscribeResult("blocked", subscriber_id)  # bounced, complained, deleted


@dataclass(frozen=True)
class Consent:
    """Where and from which (hashed) IP a signup came; recorded with the subscriber."""

    source: str
    ip_hash: str | None


@lru_cache(maxsize=1)
def _suppressed_statement() -> Any:
    """Which of these address hashes are suppressed (Core, built once: the hot path)."""
    table: Table = Suppression.__table__
    return select(table.c.email_hash).where(
        table.c.email_hash.in_(bindparam("keys", expanding=True))
    )


@lru_cache(maxsize=4)
def _bulk_insert_statement(dialect: str) -> Any:
    """INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING RETURNING id, email (executemany)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(dialect)
    table: Table = Subscriber.__table__
    statement = dialect_insert(table).on_conflict_do_nothing()
    return statement.returning(table.c.id, table.c.email)


def subscribe_many(
    session: Session,
    signups: Sequence[tuple[Signup, Consent]],
    now: datetime | None = None,
) -> list[SubscribeResult]:
    """`subscribe` for several signups in one transaction, results in the same order.

    The common case, new addresses, costs one suppression query and one multi-row INSERT for
    the lot; the rest (known or duplicated addresses) go through `subscribe` one by one. Pass
    the signups sorted by address so that concurrent transactions lock rows in the same order.
    """
    now = now or datetime.now(UTC)
    results: list[SubscribeResult | None] = [None] * len(signups)
    keys = sorted({email_hash(signup.email) for signup, _ in signups})
    suppressed = set(
        session.connection().execute(_suppressed_statement(), {"keys": keys}).scalars()
    )
    first: dict[str, int] = {}  # lower-cased address -> the first signup of it in this batch
    for index, (signup, _) in enumerate(signups):
        if email_hash(signup.email) in suppressed:
            results[index] = SubscribeResult("suppressed")
        else:
            first.setdefault(signup.email.lower(), index)
    if first:
        rows = []
        for index in first.values():
            signup, consent = signups[index]
            rows.append(
                {
                    "email": signup.email,
                    "name": signup.name,
                    "status": "pending",
                    "categories": signup.categories,
                    "frequency": signup.frequency,
                    "timezone": signup.timezone,
                    "paused": False,
                    "soft_bounces": 0,
                    "consent_at": now,
                    "consent_source": consent.source[:500],
                    "consent_ip_hash": consent.ip_hash,
                    "confirmation_sent_at": now,
                    "created_at": now,
                    "updated_at": now,
                    **new_cycle(now),
                }
            )
        statement = _bulk_insert_statement(session.get_bind().dialect.name)
        for subscriber_id, email in session.connection().execute(statement, rows):
            results[first[email.lower()]] = SubscribeResult(
                "created", subscriber_id, send_confirmation=True
            )
    for index, (signup, consent) in enumerate(signups):
        if results[index] is None:  # already known, or a second signup of one address
            results[index] = subscribe(
                session, signup, source=consent.source, ip_hash=consent.ip_hash, now=now
            )
    return results  # type: ignore[return-value]


def release_confirmation(session: Session, subscriber_id: int) -> None:
    """Give the confirmation claim back when the email could not be queued, so a retry sends."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(confirmation_sent_at=None)
        .execution_options(synchronize_session=False)
    )


def current_cycle(session: Session, subscriber_id: int) -> SignupCycle | None:
    """The live signup cycle of a pending subscriber (what its confirmation link names)."""
    row = session.execute(
        select(Subscriber.status, Subscriber.signup_cycle, Subscriber.signup_cycle_at).where(
            Subscriber.id == subscriber_id
        )
    ).first()
    if row is None or row.status != "pending":
        return None
    if not cycle_is_live(row.signup_cycle, row.signup_cycle_at, datetime.now(UTC)):
        return None
    return SignupCycle(row.signup_cycle, row.signup_cycle_at)


def confirmation_state(session: Session, claim: ConfirmClaim) -> str:
    """What `confirm` would answer, without changing anything (for the GET page).

    "pending" (the button can confirm), "already" (this cycle is confirmed) or "unavailable".
    """
    subscriber = session.get(Subscriber, claim.subscriber_id)
    if subscriber is None or not _same_cycle(subscriber, claim):
        return "unavailable"
    if subscriber.status == "active":
        return "already"
    if subscriber.status != "pending" or is_suppressed(session, subscriber.email):
        return "unavailable"
    return "pending"


def _same_cycle(subscriber: Subscriber, claim: ConfirmClaim) -> bool:
    current = subscriber.signup_cycle
    return current is not None and hmac.compare_digest(current.encode(), claim.cycle.encode())


def confirm(session: Session, claim: ConfirmClaim, now: datetime | None = None) -> str:
    """Activate a pending subscriber, if the link names its current signup cycle.

    Idempotent: a second click answers "already". Returns "confirmed" (queue the welcome
    email), "already" (active, same cycle), or "unavailable": missing; another cycle (a link
    issued before an unsubscribe or erasure); unsubscribed since; deleted, bounced,
    complained or suppressed.
    """
    now = now or datetime.now(UTC)
    subscriber = session.get(Subscriber, claim.subscriber_id, with_for_update=True)
    if subscriber is None or not _same_cycle(subscriber, claim):
        return "unavailable"
    if subscriber.status == "active":
        return "already"
    if subscriber.status != "pending" or is_suppressed(session, subscriber.email):
        return "unavailable"
    subscriber.status = "active"
    subscriber.confirmed_at = now
    subscriber.paused = False
    subscriber.updated_at = now
    return "confirmed"


def end_cycle(session: Session, subscriber_id: int) -> None:
    """No confirmation link issued so far may confirm this subscriber (unsubscribe, erasure)."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(signup_cycle=None, signup_cycle_at=None)
        .execution_options(synchronize_session=False)
    )


def unsubscribe(session: Session, subscriber_id: int, now: datetime | None = None) -> str:
    """Stop all mail to a subscriber. Idempotent.

    Returns "unsubscribed" (was active: a goodbye may follow), "stopped" (was pending or paused
    pending: no goodbye), "already" (nothing left to stop) or "missing".
    """
    now = now or datetime.now(UTC)
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return "missing"
    if subscriber.status not in ("active", "pending"):
        return "already"
    was_active = subscriber.status == "active"
    subscriber.status = "unsubscribed"
    subscriber.unsubscribed_at = now
    subscriber.updated_at = now
    subscriber.signup_cycle = None  # every confirmation link issued so far is dead
    subscriber.signup_cycle_at = None
    return "unsubscribed" if was_active else "stopped"


def get_subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    return session.get(Subscriber, subscriber_id)


def data_link_subject(session: Session, claim: DataClaim) -> Subscriber | None:
    """The subscriber a data link names, if not erased and still at the address it was sent to.

    Erasure replaces the address, so a link used to delete (or issued before an operator's
    erasure) names nobody afterwards.
    """
    subscriber = session.get(Subscriber, claim.subscriber_id)
    if subscriber is None or subscriber.status == "deleted":
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
    if subscriber is None or subscriber.status == "deleted":
        raise LookupError(subscriber_id)
    cleaned_categories = clean_categories(categories, session)
    cleaned_frequency = clean_frequency(frequency)
    cleaned_timezone = clean_timezone(timezone)
    subscriber.categories = cleaned_categories
    subscriber.frequency = cleaned_frequency
    subscriber.timezone = cleaned_timezone
    subscriber.paused = bool(paused)
    subscriber.updated_at = now or datetime.now(UTC)
    return subscriber


def export_data(session: Session, subscriber_id: int) -> dict[str, Any] | None:
    """Everything stored about one subscriber; see `digest.privacy.export_data`."""
    return privacy.export_data(session, subscriber_id)


def delete_subscriber(session: Session, subscriber_id: int, now: datetime | None = None) -> bool:
    """Erase a subscriber everywhere ("delete me"); see `digest.privacy.erase_subscriber`.

    Returns False when there was nothing left to erase.
    """
    return privacy.erase_subscriber(session, subscriber_id, now).erased
