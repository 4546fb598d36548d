"""The signup service behind `POST /subscribe`: limits, one transaction per batch, confirmations.

Requests are micro-batched (digest/web/batching.py): a batch's attempts are checked against the
per-IP and per-address limits, their valid signups written in one transaction, and the
confirmations of new addresses queued after the commit in one broker round trip. The service
answers with outcomes (`Accepted`, `Rejected`, `Limited`); the router turns them into HTTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from sqlalchemy.exc import OperationalError

from digest import metrics, subscriptions
from digest.addresses import email_hash
from digest.db import session_scope
from digest.ratelimit import Limited, RateLimiter, parse_limits
from digest.subscriptions import InvalidField
from digest.web.batching import MicroBatcher
from digest.web.email_tasks import queue_confirmations, tasks_run_in_process
from digest.web.forms import ParsedBody, SubscribeRequest, validated

log = logging.getLogger(__name__)


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


def per_ip_limits(guard: SubscribeGuard, attempts: list[SignupAttempt]) -> dict[int, Limited]:
    """The per-IP limit for a batch: one counter update for all of an IP's attempts when they
    all fit (the usual case), else attempt by attempt, so exactly those over the limit are
    refused. Returns the refused attempts' indexes. One Redis round trip either way."""
    by_ip: dict[str, list[int]] = {}
    for index, attempt in enumerate(attempts):
        by_ip.setdefault(attempt.ip, []).append(index)
    refused: dict[int, Limited] = {}
    for ip, indexes in by_ip.items():
        cost = len(indexes)
        if cost > 1 and guard.limiter.hit_all_or_none(guard.per_ip, "subscribe-ip", ip, cost):
            continue
        answers = guard.limiter.hit_each(guard.per_ip, "subscribe-ip", [ip] * cost)
        for index, limited in zip(indexes, answers, strict=True):
            if limited:
                refused[index] = limited
    return refused


def screen(attempt: SignupAttempt) -> SignupOutcome | str:
    """Honeypot and address of one attempt: its outcome, or the normalised address, which the
    per-address limit counts next. Only the address is validated here; the other fields are
    validated in the batch's transaction, where unknown categories can be looked up."""
    if attempt.fields.honeypot:
        return Accepted()
    try:
        return subscriptions.normalise_email(attempt.fields.data.get("email"))
    except InvalidField as error:
        return Rejected(error)


def per_email_limits(guard: SubscribeGuard, addresses: list[str]) -> list[Limited | None]:
    """The per-address limit for each address, in one Redis round trip (keyed by hash)."""
    hashes = [email_hash(address) for address in addresses]
    return guard.limiter.hit_each(guard.per_email, "subscribe-email", hashes)


def handle_signups(guard: SubscribeGuard, attempts: list[SignupAttempt]) -> list[SignupOutcome]:
    """Answer a batch of signups: limits, honeypot and validation per attempt, then one
    transaction for all of them, then their confirmation tasks in one broker round trip.

    Addresses are written in sorted order, so concurrent batches take row locks in the same
    order and cannot deadlock. One failing statement would fail the whole batch; the statements
    here (insert-or-nothing, guarded updates) do not fail on any input.
    """
    outcomes: list[SignupOutcome | None] = [None] * len(attempts)
    screened: list[tuple[str, int]] = []
    refused = per_ip_limits(guard, attempts)
    for index, attempt in enumerate(attempts):
        outcome = refused.get(index) or screen(attempt)
        if isinstance(outcome, str):
            screened.append((outcome, index))
        else:
            outcomes[index] = outcome
    ready: list[tuple[str, int]] = []
    limited = per_email_limits(guard, [email for email, _ in screened])
    for (email, index), over in zip(screened, limited, strict=True):
        if over:
            outcomes[index] = over
        else:
            ready.append((email, index))
    to_confirm: list[tuple[int, int]] = []
    if ready:
        ready.sort(key=lambda pair: (pair[0].lower(), pair[1]))
        try:
            to_confirm = write_signups(attempts, ready, outcomes)
        except OperationalError:  # a deadlock victim or a dropped connection: all rolled back
            log.warning("signup batch of %d rolled back; trying once more", len(ready))
            to_confirm = write_signups(attempts, ready, outcomes)
    if to_confirm and tasks_run_in_process():
        for index, subscriber_id in to_confirm:  # after each answer is sent, never before
            outcomes[index] = Accepted(confirm_after_response=subscriber_id)
    elif to_confirm:
        queue_confirmations([subscriber_id for _, subscriber_id in to_confirm])
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


def write_signups(
    attempts: list[SignupAttempt],
    ready: list[tuple[str, int]],
    outcomes: list[SignupOutcome | None],
) -> list[tuple[int, int]]:
    """One transaction for the batch's valid signups; fills their outcomes and returns (attempt
    index, subscriber id) of each confirmation to queue (after the commit, by the caller)."""
    to_confirm: list[tuple[int, int]] = []
    with session_scope() as session:
        valid: list[tuple[subscriptions.Signup, subscriptions.Consent]] = []
        valid_indexes: list[int] = []
        for email, index in ready:
            attempt = attempts[index]
            try:
                # the session is consulted only for a category outside the known list
                request = validated(
                    SubscribeRequest, {**attempt.fields.data, "email": email}, session
                )
            except InvalidField as error:
                outcomes[index] = Rejected(error)
                continue
            consent = subscriptions.Consent(attempt.source, subscriptions.ip_hash(attempt.ip))
            valid.append((request.signup(), consent))
            valid_indexes.append(index)
        if valid:
            results = subscriptions.subscribe_many(session, valid)
            for index, result in zip(valid_indexes, results, strict=True):
                if result.send_confirmation and result.subscriber_id is not None:
                    to_confirm.append((index, result.subscriber_id))
                outcomes[index] = Accepted()
    metrics.recorder().signups(len(valid))  # after the commit; one increment per batch
    return to_confirm
