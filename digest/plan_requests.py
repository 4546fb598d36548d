"""An operator's digest request (`digest send`, the admin API), validated and stored as `planned`.

Nothing is rendered or written to the ledger here: digest/planning.py plans the digest later, in
the CLI or a worker. `PlanError` names the field a request (or a plan) got wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.addresses import is_suppressed
from digest.collect import weekly_window
from digest.mail_headers import header_safe
from digest.segments import TEST_PREFIX
from digest.subscriber_rows import insert_test_recipient
from digest.subscriptions import InvalidField, available_categories, normalise_email
from schema.models import Digest, Subscriber
from schema.statuses import DigestKind, DigestStatus, SubscriberStatus

# Statuses a test copy is never sent to, whatever an operator asks.
UNMAILABLE = (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED, SubscriberStatus.DELETED)


class PlanError(ValueError):
    """A digest request that cannot be planned; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


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
    if is_suppressed(session, email):
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


def _clean_subject(subject: str | None) -> str | None:
    if subject is None:
        return None
    subject = header_safe(subject)
    if not subject:
        raise PlanError("subject", "the subject is empty")
    if len(subject) > 300 - len(TEST_PREFIX):
        raise PlanError("subject", "the subject is longer than 290 characters")
    return subject


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
    options: dict[str, Any] = {
        "subject": _clean_subject(subject),
        "segments": _clean_segments(session, segments),
        "dry_run": bool(dry_run),
    }
    if to is not None:
        options["to_subscriber_id"] = _test_recipient(session, to)
    digest = Digest(
        kind=DigestKind.TEST if to is not None else DigestKind.ADHOC,
        status=DigestStatus.PLANNED,
        window_start=since,
        window_end=until,
        options=options,
        created_at=now,
    )
    session.add(digest)
    session.flush()
    return digest
