"""The signup service behind `POST /subscribe`: limits, one INSERT per batch, confirmations.

Requests are micro-batched (digest/web/batching.py): a batch's attempts are checked against the
per-IP and per-address limits, their new addresses written by one INSERT (known addresses in one
transaction after it), and the confirmations of new addresses queued after the commit in one
broker round trip. The service answers with outcomes (`Accepted`, `Rejected`, `Limited`); the
router turns them into HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from digest import metrics, subscriptions
from digest.addresses import email_hash
from digest.db import session_scope, statement_scope
from digest.ratelimit import Limited, RateLimiter, parse_limits
from digest.signup_limits import signup_limits
from digest.subscriptions import InvalidField
from digest.web.batching import MicroBatcher
from digest.web.email_tasks import queue_confirmations, tasks_run_in_process
from digest.web.forms import ParsedBody, SubscribeRequest, validated

log = logging.getLogger(__name__)
Result = TypeVar("Result")


@dataclass(frozen=True)
class SignupAttempt:
    """One POST /subscribe, parsed, waiting for its batch."""

    fields: ParsedBody
    ip: str
    source: str


@dataclass(frozen=True)
class Accepted:
    """The one answer to every accepted (or silently dropped) signup.

    `confirm_after_response`: on the embedded default, the new subscriber whose confirmation the
    router sends once the answer has gone out (never before: see email_tasks).
    """

    confirm_after_response: int | None = None


@dataclass(frozen=True)
class Rejected:
    """A field is invalid; the error names it."""

    error: InvalidField


SignupOutcome = Accepted | Rejected | Limited


class SubscribeGuard:
    """The rate limits of the public pages and the signup batcher, built once per app."""

    def __init__(
        self, limiter: RateLimiter, per_ip: str, per_email: str, per_data_link: str = ""
    ) -> None:
        self.limiter = limiter
        self.per_ip = parse_limits(per_ip)
        self.per_email = parse_limits(per_email)
        self.per_data_link = parse_limits(per_data_link)  # data-link emails per subscriber
        self.batcher: MicroBatcher[SignupAttempt, SignupOutcome] = MicroBatcher(
            partial(handle_signups, self), max_batch=64, concurrency=1, name="signups"
        )


def screen(attempt: SignupAttempt) -> SignupOutcome | str:
    """Honeypot and address of one attempt: its outcome, or the normalised address, which the
    per-address limit counts if the per-IP limit lets the attempt through. Only the address is
    validated here; the other fields are validated with the batch's session at hand, where
    unknown categories can be looked up."""
    if attempt.fields.honeypot:
        return Accepted()
    try:
        return subscriptions.normalise_email(attempt.fields.data.get("email"))
    except InvalidField as error:
        return Rejected(error)


def handle_signups(guard: SubscribeGuard, attempts: list[SignupAttempt]) -> list[SignupOutcome]:
    """Answer a batch of signups: limits, honeypot and validation per attempt, then one INSERT
    for their new addresses (`write_signups`), then their confirmation tasks in one broker
    round trip.

    Addresses are written in sorted order, so concurrent batches take row locks in the same
    order and cannot deadlock. One failing statement would fail the whole batch; the statements
    here (insert-or-nothing, guarded updates) do not fail on any input.
    """
    outcomes: list[SignupOutcome | None] = [None] * len(attempts)
    screened = [screen(attempt) for attempt in attempts]
    limited = signup_limits(
        guard.limiter,
        guard.per_ip,
        guard.per_email,
        [
            (attempt.ip, email_hash(email) if isinstance(email, str) else None)
            for attempt, email in zip(attempts, screened, strict=True)
        ],
    )
    ready: list[tuple[str, int]] = []
    for index, (email, over) in enumerate(zip(screened, limited, strict=True)):
        if over:  # the per-IP limit, whatever the attempt holds; or the per-address limit
            outcomes[index] = over
        elif isinstance(email, str):
            ready.append((email, index))
        else:
            outcomes[index] = email
    to_confirm: list[tuple[int, int]] = []  # (attempt index, subscriber id), once committed
    failed = True
    try:
        if ready:
            ready.sort(key=lambda pair: (pair[0].lower(), pair[1]))
            write_signups(attempts, ready, outcomes, to_confirm)
        failed = False
    finally:  # new rows are committed by their own statement: their confirmations go out anyway
        confirm(to_confirm, outcomes, failed)
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


def confirm(
    to_confirm: list[tuple[int, int]], outcomes: list[SignupOutcome | None], failed: bool
) -> None:
    """The committed new subscribers' confirmations: queued in one broker round trip, or on
    the embedded default sent once each answer has gone out (at once if the batch failed)."""
    if not to_confirm:
        return
    if tasks_run_in_process() and not failed:
        for index, subscriber_id in to_confirm:  # after each answer is sent, never before
            outcomes[index] = Accepted(confirm_after_response=subscriber_id)
        return
    queue_confirmations([subscriber_id for _, subscriber_id in to_confirm])


def once_more(write: Callable[[], Result]) -> Result:
    """`write` again after an OperationalError (a deadlock victim, or a connection dropped
    while idle: the statement or transaction it was in wrote nothing)."""
    try:
        return write()
    except OperationalError:
        log.warning("a signup write failed and was rolled back; trying once more")
        return write()


def validated_signups(
    attempts: list[SignupAttempt],
    ready: list[tuple[str, int]],
    outcomes: list[SignupOutcome | None],
) -> tuple[list[tuple[subscriptions.Signup, subscriptions.Consent]], list[int]]:
    """The batch's valid signups (and their attempts' indexes); invalid ones get their outcome.
    The session connects only for a category outside the known list."""
    valid: list[tuple[subscriptions.Signup, subscriptions.Consent]] = []
    indexes: list[int] = []
    with session_scope() as session:
        for email, index in ready:
            attempt = attempts[index]
            try:
                request = validated(
                    SubscribeRequest, {**attempt.fields.data, "email": email}, session
                )
            except InvalidField as error:
                outcomes[index] = Rejected(error)
                continue
            consent = subscriptions.Consent(attempt.source, subscriptions.ip_hash(attempt.ip))
            valid.append((request.signup(), consent))
            indexes.append(index)
    return valid, indexes


def write_signups(
    attempts: list[SignupAttempt],
    ready: list[tuple[str, int]],
    outcomes: list[SignupOutcome | None],
    to_confirm: list[tuple[int, int]],
) -> None:
    """Write the batch's valid signups, fill their outcomes, and add to `to_confirm` each
    confirmation to queue once its row is committed.

    New addresses (the common case): one INSERT that is a transaction of its own, one round
    trip (no session, no BEGIN, COMMIT or ping: three of the four round trips the batch's
    transaction used to cost). Known, suppressed or repeated addresses: one transaction after
    it, in address order. Every row is written whole by one statement, so a failure in the
    second step leaves no half-written subscriber; the first step's confirmations still go out.
    """
    valid, indexes = validated_signups(attempts, ready, outcomes)
    if not valid:
        return
    now = datetime.now(UTC)

    def insert_new() -> list[subscriptions.SubscribeResult | None]:
        with statement_scope() as connection:
            return subscriptions.subscribe_new(connection, valid, now)

    created = once_more(insert_new)
    for index, result in zip(indexes, created, strict=True):
        if result is not None and result.subscriber_id is not None:
            to_confirm.append((index, result.subscriber_id))
            outcomes[index] = Accepted()
    if any(result is None for result in created):

        def subscribe_known() -> list[subscriptions.SubscribeResult]:
            with session_scope() as session:
                return subscriptions.subscribe_rest(session, valid, created, now)

        for index, result in zip(indexes, once_more(subscribe_known), strict=True):
            if outcomes[index] is None:
                if result.send_confirmation and result.subscriber_id is not None:
                    to_confirm.append((index, result.subscriber_id))
                outcomes[index] = Accepted()
    metrics.recorder().signups(len(valid))  # after the commit; one increment per batch
