"""A signup batch's per-IP and per-address limits, in one Redis round trip."""

from __future__ import annotations

from itertools import pairwise

import pytest
import redis as redis_lib

from digest.ratelimit import RateLimiter, limiter_for, parse_limits
from digest.signup_limits import signup_limits

PER_IP = parse_limits("3/minute;5/hour")
PER_EMAIL = parse_limits("2/hour")


@pytest.fixture(autouse=True)
def _fresh_scripts(redis_url: str) -> None:
    """Each test starts without the script loaded in Redis, as a restarted Redis would."""
    redis_lib.Redis.from_url(redis_url).script_flush()


def refused(limiter: RateLimiter, attempts: list[tuple[str, str | None]]) -> list[bool]:
    return [bool(x) for x in signup_limits(limiter, PER_IP, PER_EMAIL, attempts)]


def test_an_ips_attempts_over_its_limit_are_refused_and_the_rest_let_through(
    redis_url: str,
) -> None:
    limiter = limiter_for(redis_url)
    attempts = [("192.0.2.1", f"a{i}") for i in range(5)] + [("192.0.2.2", "b")]
    assert refused(limiter, attempts) == [False, False, False, True, True, False]


def test_an_attempt_refused_by_its_ip_is_not_counted_against_its_address(
    redis_url: str,
) -> None:
    limiter = limiter_for(redis_url)
    assert refused(limiter, [("192.0.2.1", "victim")] * 4) == [False, False, True, True]
    # The address was counted twice (its two admitted attempts), so a third IP is refused.
    assert refused(limiter, [("192.0.2.2", "victim")]) == [True]


def test_an_attempt_without_an_address_counts_against_its_ip_only(redis_url: str) -> None:
    limiter = limiter_for(redis_url)
    assert refused(limiter, [("192.0.2.1", None)] * 3) == [False] * 3
    assert refused(limiter, [("192.0.2.1", "a")]) == [True]


def test_the_one_round_trip_answers_as_the_one_by_one_calls_do(redis_url: str) -> None:
    batches = [
        [("ip1", "a"), ("ip1", "b"), ("ip2", "a"), ("ip1", None), ("ip3", "a")],
        [("ip1", "c"), ("ip2", "a"), ("ip2", "a"), ("ip2", "d"), ("ip3", None)],
        [("ip2", "e"), ("ip3", "a"), ("ip4", "a"), ("ip1", "f")],
    ]
    in_redis = limiter_for(redis_url)
    in_memory = limiter_for("")
    for batch in batches:
        assert refused(in_redis, batch) == refused(in_memory, batch)


def test_a_refused_attempt_is_told_when_to_come_back(redis_url: str) -> None:
    limiter = limiter_for(redis_url)
    attempts = [("192.0.2.1", f"a{i}") for i in range(4)]
    answers = signup_limits(limiter, PER_IP, PER_EMAIL, attempts)
    assert answers[:3] == [None] * 3
    assert answers[3] is not None and 1 <= answers[3].retry_after <= 60


def test_without_redis_every_signup_is_let_through() -> None:
    limiter = limiter_for("redis://127.0.0.1:1/0")
    assert signup_limits(limiter, PER_IP, PER_EMAIL, [("192.0.2.1", "a")] * 9) == [None] * 9


def test_batches_keep_counting_across_calls(redis_url: str) -> None:
    limiter = limiter_for(redis_url)
    answers = [refused(limiter, [("192.0.2.9", f"x{i}")]) for i in range(6)]
    assert answers == [[False]] * 3 + [[True]] * 3
    assert all(a <= b for a, b in pairwise(answers))
