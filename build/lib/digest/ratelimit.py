"""Rate limits for the public endpoints, through the `limits` library (moving windows).

Counters live in Redis when `DIGEST_REDIS_URL` is set, so every web worker shares them; the
embedded default counts in process memory. Keys carry a scope and an identifier (an IP, or the
hash of an address — never the address itself).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limited:
    """A refused hit: how long until the caller may try again."""

    retry_after: int


class RateLimiter:
    """Moving-window limits per (scope, identifier); `hit` counts and answers in one call."""

    def __init__(self, storage_uri: str) -> None:
        self.storage: Storage = storage_from_string(storage_uri, key_prefix="digest-limits")
        self.strategy = MovingWindowRateLimiter(self.storage)

    def hit(
        self, limits: list[RateLimitItem], scope: str, identifier: str, cost: int = 1
    ) -> Limited | None:
        """Count `cost` requests; a `Limited` if any of `limits` cannot take them (not counted).

        If the storage is down the request is let through and logged: a signup form that fails
        closed would turn a Redis outage into lost subscribers.
        """
        for item in limits:
            try:
                allowed = self.strategy.hit(item, scope, identifier, cost=cost)
                if allowed:
                    continue
                reset_at, _remaining = self.strategy.get_window_stats(item, scope, identifier)
            except Exception:  # the storage's own connection errors vary by backend
                log.warning("rate limit storage unavailable; letting %s through", scope)
                return None
            return Limited(retry_after=max(1, math.ceil(reset_at - time.time())))
        return None

    def fits(self, limits: list[RateLimitItem], scope: str, identifier: str, cost: int) -> bool:
        """Whether `cost` more requests fit in every limit right now (nothing is counted)."""
        try:
            return all(self.strategy.test(item, scope, identifier, cost=cost) for item in limits)
        except Exception:
            log.warning("rate limit storage unavailable; letting %s through", scope)
            return True


def parse_limits(spec: str) -> list[RateLimitItem]:
    """ "20/minute;200/day" → limit items; an empty spec means no limit."""
    return parse_many(spec) if spec.strip() else []


def limiter_for(redis_url: str) -> RateLimiter:
    """Redis-backed when a URL is configured; otherwise in this process's memory."""
    return RateLimiter(redis_url or "memory://")
