"""Rate-limit buckets in Redis: one Lua script per call checks and charges every bucket atomically.

The script is the same arithmetic as :class:`fluxway.policy.limits.MemoryLimiter` (a bucket of
``limit`` units draining at ``limit`` per window), timed by the Redis server's clock, so any number
of gateway processes sharing one Redis enforce one limit exactly. Each bucket is a small hash
(``l``: level, ``t``: last update in ms) that expires once it has drained empty.

While Redis is down (see :class:`fluxway.redis_client.RedisHealth`) the limiter does not call it;
``redis.on_failure: open`` limits on a per-process in-memory fallback (with a warning at most every
30 s and ``fluxway_redis_fallback_total``), so limits then hold per process instead of across them;
``closed`` answers 503 ``redis_unavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from fluxway.policy.limits import NEVER, WINDOW_S, Bucket, BucketState, Decision, MemoryLimiter
from fluxway.redis_client import REDIS_FAILURES, RedisHealth

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("fluxway.limits")

KEY_PREFIX = "fluxway:rl:"

# KEYS: buckets. ARGV: now_ms ("" = the server's clock), window_ms, then limit, cost for each bucket.
# Returns {allowed, then remaining, reset_ms, wait_ms (-1: never fits) for each bucket}.
ACQUIRE = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local window = tonumber(ARGV[2])
local n = #KEYS
local levels, stamps, limits, costs = {}, {}, {}, {}
local ok = 1
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local cost = tonumber(ARGV[2 + 2 * i])
  local level, at = 0, now
  if limit > 0 then
    local s = redis.call('HMGET', KEYS[i], 'l', 't')
    if s[1] then
      level = tonumber(s[1])
      at = tonumber(s[2])
      if now > at then
        level = level - (now - at) * limit / window
        if level < 0 then level = 0 end
        at = now
      end
    end
  end
  levels[i], stamps[i], limits[i], costs[i] = level, at, limit, cost
  if limit <= 0 or level + cost > limit then ok = 0 end
end
local out = {ok}
for i = 1, n do
  local limit, cost, level = limits[i], costs[i], levels[i]
  if ok == 1 then
    level = level + cost
    redis.call('HSET', KEYS[i], 'l', string.format('%.17g', level), 't', string.format('%.17g', stamps[i]))
    redis.call('PEXPIRE', KEYS[i], math.ceil(level * window / limit) + 1000)
  end
  local remaining, reset, wait = 0, 0, 0
  if limit > 0 then
    remaining = math.max(0, math.floor(limit - level + 1e-9))
    reset = math.ceil(level * window / limit)
  end
  if ok == 0 and (limit <= 0 or level + cost > limit) then
    if limit <= 0 or cost > limit then
      wait = -1
    else
      wait = math.ceil((level + cost - limit) * window / limit)
    end
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = wait
end
return out
"""

# KEYS: buckets. ARGV: now_ms ("" = server clock), window_ms, then limit, delta for each bucket.
ADJUST = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local window = tonumber(ARGV[2])
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + 2 * i])
  local delta = tonumber(ARGV[2 + 2 * i])
  if limit > 0 then
    local s = redis.call('HMGET', KEYS[i], 'l', 't')
    local level, at = 0, now
    if s[1] then
      level = tonumber(s[1])
      at = tonumber(s[2])
      if now > at then
        level = level - (now - at) * limit / window
        if level < 0 then level = 0 end
        at = now
      end
    end
    level = level + delta
    if level > 0 then
      redis.call('HSET', KEYS[i], 'l', string.format('%.17g', level), 't', string.format('%.17g', at))
      redis.call('PEXPIRE', KEYS[i], math.ceil(level * window / limit) + 1000)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return 1
"""

class RedisLimiter:
    """Buckets in Redis. ``clock`` (seconds) replaces the server's clock, for tests only. ``health``
    is shared with the other Redis users of the process (its own, ``open``, when not given)."""

    def __init__(
        self,
        redis: Redis,
        *,
        window_s: float = WINDOW_S,
        prefix: str = KEY_PREFIX,
        clock: Callable[[], float] | None = None,
        health: RedisHealth | None = None,
    ) -> None:
        self._redis = redis
        self._window_ms = str(int(window_s * 1000))
        self._prefix = prefix
        self._clock = clock
        self._acquire = redis.register_script(ACQUIRE)
        self._adjust = redis.register_script(ADJUST)
        self._fallback = MemoryLimiter(window_s=window_s)
        self.health = health if health is not None else RedisHealth(redis)

    def _args(self, buckets: Sequence[Bucket]) -> tuple[list[str], list[Any]]:
        keys = [self._prefix + b.key for b in buckets]
        args: list[Any] = [repr(self._clock() * 1000.0) if self._clock else "", self._window_ms]
        for b in buckets:
            args.append(b.limit)
            args.append(b.cost)
        return keys, args

    async def acquire(self, buckets: Sequence[Bucket]) -> Decision:
        if not buckets:
            return Decision(True, ())
        health = self.health
        if not health.up:
            health.fallback("limits")  # closed: raises 503 redis_unavailable
            return self._fallback.acquire_now(buckets)
        keys, args = self._args(buckets)
        try:
            try:
                raw = await self._acquire(keys=keys, args=args)
            except NoScriptError:  # pragma: no cover - redis-py reloads scripts itself; belt and braces
                raw = await self._acquire(keys=keys, args=args)
        except REDIS_FAILURES as exc:
            health.failed(exc)
            health.fallback("limits")
            return self._fallback.acquire_now(buckets)
        values = [int(v) for v in raw]
        states = tuple(
            BucketState(
                values[1 + 3 * i],
                values[2 + 3 * i] / 1000.0,
                NEVER if values[3 + 3 * i] < 0 else values[3 + 3 * i] / 1000.0,
            )
            for i in range(len(buckets))
        )
        return Decision(values[0] == 1, states)

    async def adjust(self, buckets: Sequence[Bucket]) -> None:
        if not buckets:
            return
        if not self.health.up:
            self._fallback.adjust_now(buckets)  # never refused: the call has already been served
            return
        keys, args = self._args(buckets)
        try:
            await self._adjust(keys=keys, args=args)
        except REDIS_FAILURES as exc:
            self.health.failed(exc)
            self._fallback.adjust_now(buckets)


__all__ = ["ACQUIRE", "ADJUST", "KEY_PREFIX", "RedisLimiter"]
