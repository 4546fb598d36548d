"""A signup batch's two rate limits, per IP and then per address, in one Redis round trip.

The rules are those of `RateLimiter.hit_all_or_none` and `hit_each` (the same keys, entries and
moving windows), applied as the signup service applied them one call after the other: each IP's
attempts all at once when they all fit, else attempt by attempt, so exactly those over the limit
are refused; then the per-address limit, counted only for attempts the IP limit let through that
carry an address. One script call instead of two pipelines (one per IP, one for the addresses):
under load each round trip of the batch's thread also waits for the event loop's thread to hand
back the GIL. The in-memory storage (the embedded default) makes the same calls one by one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from limits import RateLimitItem
from limits.storage import RedisStorage
from redis.exceptions import NoScriptError

from digest.ratelimit import Limited, RateLimiter

log = logging.getLogger(__name__)

IP_SCOPE = "subscribe-ip"
EMAIL_SCOPE = "subscribe-email"

# KEYS: each IP group's keys (one per IP limit item), then each address's keys (one per address
# item). ARGV: now, #IP items, #address items, (limit, expiry) of each IP item, then of each
# address item, #groups, each group's cost (its attempts), #addresses, then (group, position
# within the group) of each address's attempt. Returns, for each attempt (group by group) the
# 1-based index of the IP item that refused it or 0, then for each address the index of the
# address item that refused it, 0, or -1 (not counted: its attempt was refused by IP).
SIGNUP_LIMITS = """
local now, n_ip, n_em = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ip_first, em_first = 4, 4 + 2 * n_ip
local function item(first, i)
  return tonumber(ARGV[first + 2 * i - 2]), tonumber(ARGV[first + 2 * i - 1])
end
local function refuses(key, limit, expiry, amount)
  if amount > limit then return true end
  local entry = redis.call('lindex', key, limit - amount)
  return entry and tonumber(entry) >= now - expiry
end
local function take(key, limit, expiry, amount)
  local entries = {}
  for n = 1, amount do entries[n] = now end
  for n = 1, #entries, 5000 do
    redis.call('lpush', key, unpack(entries, n, math.min(n + 4999, #entries)))
  end
  redis.call('ltrim', key, 0, limit - 1)
  redis.call('expire', key, expiry)
end
local function hit(k0, n, first)
  for i = 1, n do
    local limit, expiry = item(first, i)
    if refuses(KEYS[k0 + i], limit, expiry, 1) then return i end
    take(KEYS[k0 + i], limit, expiry, 1)
  end
  return 0
end
local at = em_first + 2 * n_em
local groups = tonumber(ARGV[at]); at = at + 1
local out, admitted = {}, {}
for g = 1, groups do
  local cost, k0 = tonumber(ARGV[at]), (g - 1) * n_ip; at = at + 1
  local all = cost > 1
  for i = 1, (all and n_ip or 0) do
    local limit, expiry = item(ip_first, i)
    if refuses(KEYS[k0 + i], limit, expiry, cost) then all = false; break end
  end
  admitted[g] = {}
  for i = 1, (all and n_ip or 0) do
    local limit, expiry = item(ip_first, i)
    take(KEYS[k0 + i], limit, expiry, cost)
  end
  for p = 1, cost do
    local refused = 0
    if not all then refused = hit(k0, n_ip, ip_first) end
    out[#out + 1] = refused
    admitted[g][p] = refused == 0
  end
end
local addresses, e0 = tonumber(ARGV[at]), groups * n_ip; at = at + 1
for e = 1, addresses do
  local g, p = tonumber(ARGV[at]), tonumber(ARGV[at + 1]); at = at + 2
  if admitted[g][p] then out[#out + 1] = hit(e0 + (e - 1) * n_em, n_em, em_first)
  else out[#out + 1] = -1 end
end
return out
"""


def signup_limits(
    limiter: RateLimiter,
    per_ip: list[RateLimitItem],
    per_email: list[RateLimitItem],
    attempts: Sequence[tuple[str, str | None]],
) -> list[Limited | None]:
    """For each attempt (IP, key of its address or None when it has none to count): the
    `Limited` refusing it, or None. If Redis is down every attempt is let through and logged:
    a signup form that fails closed would turn a Redis outage into lost subscribers."""
    if not isinstance(limiter.storage, RedisStorage):
        return _one_by_one(limiter, per_ip, per_email, attempts)
    groups: dict[str, list[int]] = {}  # IP -> its attempts' indexes, in order
    for index, (ip, _) in enumerate(attempts):
        groups.setdefault(ip, []).append(index)
    place = {index: (g, p) for g, members in enumerate(groups.values(), 1)
             for p, index in enumerate(members, 1)}  # fmt: skip
    counted = [index for index, (_, key) in enumerate(attempts) if key is not None]
    try:
        answers = _run(limiter, per_ip, per_email, attempts, groups, place, counted)
    except Exception:  # the storage's connection errors
        log.warning("rate limit storage unavailable; letting signups through")
        return [None] * len(attempts)
    results: list[Limited | None] = [None] * len(attempts)
    ordered = [index for members in groups.values() for index in members]
    for index, refused in zip(ordered, answers[: len(ordered)], strict=True):
        if refused > 0:
            results[index] = limiter.refusal(per_ip[refused - 1], IP_SCOPE, attempts[index][0])
    for index, refused in zip(counted, answers[len(ordered) :], strict=True):
        if refused > 0:
            key = attempts[index][1]
            assert key is not None
            results[index] = limiter.refusal(per_email[refused - 1], EMAIL_SCOPE, key)
    return results


def _run(
    limiter: RateLimiter,
    per_ip: list[RateLimitItem],
    per_email: list[RateLimitItem],
    attempts: Sequence[tuple[str, str | None]],
    groups: dict[str, list[int]],
    place: dict[int, tuple[int, int]],
    counted: list[int],
) -> list[int]:
    storage = limiter.storage
    assert isinstance(storage, RedisStorage)
    keys = [storage.prefixed_key(item.key_for(IP_SCOPE, ip)) for ip in groups for item in per_ip]
    for index in counted:
        address = attempts[index][1]
        keys += [storage.prefixed_key(item.key_for(EMAIL_SCOPE, address)) for item in per_email]
    args: list[float | int | str] = [time.time(), len(per_ip), len(per_email)]
    for item in (*per_ip, *per_email):
        args += [item.amount, item.get_expiry()]
    args += [len(groups), *(len(members) for members in groups.values()), len(counted)]
    for index in counted:
        args += place[index]
    client = storage.get_connection()
    sha = _SHA.get("sha")
    for attempt in (1, 2):
        if sha is None or attempt == 2:  # first use, or Redis lost its scripts
            sha = _SHA["sha"] = client.script_load(SIGNUP_LIMITS)
        try:
            return [int(answer) for answer in client.evalsha(sha, len(keys), *keys, *args)]
        except NoScriptError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


_SHA: dict[str, str] = {}


def _one_by_one(
    limiter: RateLimiter,
    per_ip: list[RateLimitItem],
    per_email: list[RateLimitItem],
    attempts: Sequence[tuple[str, str | None]],
) -> list[Limited | None]:
    """The same rules through `RateLimiter`'s calls (the in-memory storage)."""
    results: list[Limited | None] = [None] * len(attempts)
    groups: dict[str, list[int]] = {}
    for index, (ip, _) in enumerate(attempts):
        groups.setdefault(ip, []).append(index)
    for ip, members in groups.items():
        cost = len(members)
        if cost > 1 and limiter.hit_all_or_none(per_ip, IP_SCOPE, ip, cost):
            continue
        for index, limited in zip(
            members, limiter.hit_each(per_ip, IP_SCOPE, [ip] * cost), strict=True
        ):
            results[index] = limited
    counted = [i for i, (_, key) in enumerate(attempts) if key is not None and not results[i]]
    keys = [attempts[index][1] or "" for index in counted]
    for index, limited in zip(counted, limiter.hit_each(per_email, EMAIL_SCOPE, keys), strict=True):
        results[index] = limited
    return results
