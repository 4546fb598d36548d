"""Concurrent signups: shared batches, one row and one confirmation per address, no lost answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from digest.ratelimit import limiter_for
from digest.web.batching import MicroBatcher
from digest.web.forms import ParsedBody
from digest.web.signup_service import Accepted, SignupAttempt, SubscribeGuard, handle_signups
from tests.support.subscriber_fixtures import count_subscribers, find, mails_to


async def post_all(base: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        return await asyncio.gather(*(http.post("/subscribe", json=body) for body in bodies))


@pytest.fixture
def generous_limits(base_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_IP", "10000/minute")
    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_EMAIL", "10000/hour")


def test_concurrent_signups_share_batches_and_all_get_their_answer(
    generous_limits: None, served_app: tuple[str, FastAPI]
) -> None:
    base, app = served_app
    bodies = [{"email": f"reader{i}@example.com"} for i in range(60)]
    responses = asyncio.run(post_all(base, bodies))
    assert [r.status_code for r in responses] == [202] * 60
    assert count_subscribers() == 60
    batcher = app.state.subscribe_guard.batcher
    assert batcher.items == 60
    assert batcher.batches < 60  # requests that arrived together were written together


def test_one_address_sent_concurrently_is_one_subscriber_with_one_confirmation(
    generous_limits: None, served_app: tuple[str, FastAPI], outbox: Path
) -> None:
    base, _app = served_app
    spellings = ["ada@example.com", "ADA@example.com", "Ada@Example.COM"]
    bodies = [{"email": spellings[i % 3]} for i in range(30)]
    responses = asyncio.run(post_all(base, bodies))
    assert {r.status_code for r in responses} == {202}
    assert count_subscribers() == 1
    assert find("ada@example.com").status == "pending"
    # Served by uvicorn, the embedded default sends the confirmation just after the answer.
    deadline = time.monotonic() + 15
    while not mails_to(outbox, "ada@example.com", "confirmation"):
        assert time.monotonic() < deadline, "no confirmation"
        time.sleep(0.05)
    time.sleep(0.5)  # time for a duplicate, were there one
    assert len(mails_to(outbox, "ada@example.com", "confirmation")) == 1


def test_an_invalid_signup_does_not_spoil_its_batch(
    generous_limits: None, served_app: tuple[str, FastAPI]
) -> None:
    base, _app = served_app
    bodies = [{"email": f"ok{i}@example.com"} for i in range(10)]
    bodies[4] = {"email": "ok4@example.com", "timezone": "Nowhere/Land"}
    bodies[7] = {"email": "not an address"}
    responses = asyncio.run(post_all(base, bodies))
    codes = [r.status_code for r in responses]
    assert codes == [202, 202, 202, 202, 422, 202, 202, 422, 202, 202]
    assert responses[4].json()["detail"][0]["loc"] == ["body", "timezone"]
    assert count_subscribers() == 8


def test_a_failing_batch_fails_every_request_in_it() -> None:
    def work(items: list[int]) -> list[int]:
        if 3 in items:
            raise RuntimeError("database went away")
        return [i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(work, concurrency=1)

    async def run() -> list[object]:
        return await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)

    results = asyncio.run(run())
    failed = [i for i, r in enumerate(results) if isinstance(r, RuntimeError)]
    assert 3 in failed
    assert all(results[i] == i * 10 for i in range(6) if i not in failed)
    assert batcher.running == 0  # nothing left behind for the next event loop


def test_per_ip_limit_counts_every_signup_of_a_batch(
    base_env: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_IP", "4/minute")
    base, _app = request.getfixturevalue("served_app")
    responses = asyncio.run(post_all(base, [{"email": f"r{i}@example.com"} for i in range(10)]))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 4 + [429] * 6
    assert count_subscribers() == 4


def test_subscribe_many_answers_in_order_for_new_known_repeated_and_suppressed(pg: str) -> None:
    from digest.addresses import email_hash
    from digest.db import session_scope
    from digest.subscriptions import Consent, make_signup, subscribe_many
    from schema.models import Subscriber, Suppression

    with session_scope() as session:
        session.add(Subscriber(email="known@example.com", status="active"))
        session.add(Suppression(email_hash=email_hash("gone@example.com"), reason="deleted"))
    consent = Consent("api", None)
    addresses = ["a@example.com", "gone@example.com", "A@example.com", "known@example.com"]
    with session_scope() as session:
        results = subscribe_many(
            session, [(make_signup(email=address), consent) for address in addresses]
        )
    assert [r.outcome for r in results] == ["created", "suppressed", "pending", "active"]
    assert [r.send_confirmation for r in results] == [True, False, False, False]
    assert results[2].subscriber_id == results[0].subscriber_id
    assert count_subscribers() == 2


def signup_attempts(*addresses: str) -> list[SignupAttempt]:
    return [SignupAttempt(ParsedBody(True, {"email": a}), "192.0.2.1", "api") for a in addresses]


def test_a_batch_failing_after_its_new_addresses_still_sends_their_confirmations(
    pg: str, eager_tasks: None, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest import subscriptions
    from digest.db import session_scope
    from schema.models import Subscriber

    with session_scope() as session:
        session.add(Subscriber(email="known@example.com", status="active"))

    def broken(*_args: object) -> None:
        raise RuntimeError("the known addresses' transaction failed")

    monkeypatch.setattr(subscriptions, "subscribe_rest", broken)
    guard = SubscribeGuard(limiter_for(""), "100/minute", "100/hour")
    with pytest.raises(RuntimeError):
        handle_signups(guard, signup_attempts("new@example.com", "known@example.com"))
    # The new address's row was committed by its own statement: it is whole, and confirmed to.
    assert find("new@example.com").status == "pending"
    assert len(mails_to(outbox, "new@example.com", "confirmation")) == 1


def test_a_dropped_connection_costs_the_new_addresses_one_more_try_not_their_signup(
    pg: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from digest import subscriptions

    real = subscriptions.subscribe_new
    calls: list[int] = []

    def drops_once(*args: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(subscriptions, "subscribe_new", drops_once)
    guard = SubscribeGuard(limiter_for(""), "100/minute", "100/hour")
    outcomes = handle_signups(guard, signup_attempts("a@example.com", "b@example.com"))
    assert all(isinstance(outcome, Accepted) for outcome in outcomes)
    assert len(calls) == 2
    assert count_subscribers() == 2
