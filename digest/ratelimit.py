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
from limits.storage import RedisStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)

# `limits`' own moving-window acquire (acquire_moving_window.lua), for every item of a limit spec
# in one call, on the same keys and entries: returns 0 when every item took `amount`, else the
# 1-based index of the item that refused. Sequential (ARGV[3] "0"): the items before the refusing
# one are counted, as `RateLimiter.hit` counts them; all-or-nothing ("1"): nothing is counted
# unless every item has room (what `fits` then `hit` did in two round trips).
ACQUIRE_ALL = """
local now, amount, atomic = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local function refuses(i)
  local limit, expiry = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  if amount > limit then return true end
  local entry = redis.call('lindex', KEYS[i], limit - amount)
  return entry and tonumber(entry) >= now - expiry
end
local function take(i)
  local limit, expiry = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  local entries = {}
  for n = 1, amount do entries[n] = now end
  for n = 1, #entries, 5000 do
    redis.call('lpush', KEYS[i], unpack(entries, n, math.min(n + 4999, #entries)))
  end
  redis.call('ltrim', KEYS[i], 0, limit - 1)
  redis.call('expire', KEYS[i], expiry)
end
if atomic then
  for i = 1, #KEYS do if refuses(i) then return i end end
  for i = 1, #KEYS do take(i) end
  return 0
end
for i = 1, #KEYS do
  if refuses(i) then return i end
  take(i)
end
return 0
"""


@dataclass(frozen=True)
class Limited:
    """A refused hit: how long until the caller may try again."""

    retry_after: int


class RateLimiter:
    """Moving-window limits per (scope, identifier); `hit` counts and answers in one call."""

    def __init__(self, storage_uri: str) -> None:
        self.storage: Storage = storage_from_string(storage_uri, key_prefix="digest-limits")
        self.strategy = MovingWindowRateLimiter(self.storage)
        self._sha: str | None = None  # ACQUIRE_ALL, loaded into Redis on first use

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

    def hit_each(
        self, limits: list[RateLimitItem], scope: str, identifiers: list[str]
    ) -> list[Limited | None]:
        """`hit` for each identifier, in one Redis round trip (a pipeline of one script call
        each) instead of one per identifier; the in-memory storage hits one by one."""
        if not limits or not identifiers:
            return [None] * len(identifiers)
        if not isinstance(self.storage, RedisStorage):
            return [self.hit(limits, scope, identifier) for identifier in identifiers]
        try:
            refused = self._acquire(limits, scope, identifiers, amount=1, atomic=False)
        except Exception:
            log.warning("rate limit storage unavailable; letting %s through", scope)
            return [None] * len(identifiers)
        return [
            self.refusal(limits[index - 1], scope, identifier) if index else None
            for identifier, index in zip(identifiers, refused, strict=True)
        ]

    def hit_all_or_none(
        self, limits: list[RateLimitItem], scope: str, identifier: str, cost: int
    ) -> bool:
        """Count `cost` requests only if every limit has room for all of them: True if counted.

        One round trip on Redis; the in-memory storage checks, then counts."""
        if not limits:
            return True
        if not isinstance(self.storage, RedisStorage):
            return self.fits(limits, scope, identifier, cost) and not self.hit(
                limits, scope, identifier, cost=cost
            )
        try:
            return self._acquire(limits, scope, [identifier], amount=cost, atomic=True) == [0]
        except Exception:
            log.warning("rate limit storage unavailable; letting %s through", scope)
            return True

    def _acquire(
        self,
        limits: list[RateLimitItem],
        scope: str,
        identifiers: list[str],
        *,
        amount: int,
        atomic: bool,
    ) -> list[int]:
        """ACQUIRE_ALL per identifier, pipelined: 0, or the index of the refusing item."""
        storage = self.storage
        assert isinstance(storage, RedisStorage)
        client = storage.get_connection()
        spec: list[float | int | str] = [time.time(), amount, "1" if atomic else "0"]
        for item in limits:
            spec += [item.amount, item.get_expiry()]
        for attempt in (1, 2):
            if self._sha is None or attempt == 2:  # first use, or Redis lost its scripts
                self._sha = client.script_load(ACQUIRE_ALL)
            pipe = client.pipeline(transaction=False)  # EVALSHA directly: no SCRIPT EXISTS
            for identifier in identifiers:
                keys = [storage.prefixed_key(item.key_for(scope, identifier)) for item in limits]
                pipe.evalsha(self._sha, len(keys), *keys, *spec)
            try:
                return [int(index) for index in pipe.execute()]
            except NoScriptError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def refusal(self, item: RateLimitItem, scope: str, identifier: str) -> Limited:
        """The answer to a refused hit: seconds until the item's window has room again."""
        try:
            reset_at, _remaining = self.strategy.get_window_stats(item, scope, identifier)
        except Exception:
            reset_at = time.time() + 1
        return Limited(retry_after=max(1, math.ceil(reset_at - time.time())))

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
