"""The budget ledger shared by several instances (``redis.url``): :class:`RedisLedger`.

One Lua script checks and reserves every bucket of a call atomically; a reservation is a lease
(``redis.lease_s``) renewed by one heartbeat task per ledger, so a crashed instance's holds are
reclaimed about ``lease_s`` after its last beat. See :mod:`fluxway.policy.budget` for the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from fluxway.errors import GatewayError
from fluxway.policy.budget import (
    Refusal,
    Reservation,
    SpendLoader,
    Window,
    Windows,
    _held,
    to_nano,
)
from fluxway.policy.keys import BudgetLine
from fluxway.redis_client import REDIS_FAILURES, RedisHealth

log = logging.getLogger("fluxway.budget")


_RESERVE = """
local n = #KEYS / 2
local amount = tonumber(ARGV[1])
local now = tonumber(ARGV[3])
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  if redis.call('HEXISTS', h, 's') == 0 then return {-1, i, 0, 0} end
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, id in ipairs(expired) do
    local a = redis.call('HGET', h, 'r:' .. id)
    if a then
      redis.call('HINCRBY', h, 'r', -tonumber(a))
      redis.call('HDEL', h, 'r:' .. id)
    end
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
end
for i = 1, n do
  local h = KEYS[2*i-1]
  local s = tonumber(redis.call('HGET', h, 's'))
  local r = tonumber(redis.call('HGET', h, 'r') or '0')
  local limit = tonumber(ARGV[4 + i])
  if s >= limit or s + r + amount > limit then return {0, i, tostring(s), tostring(r)} end
end
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  redis.call('HINCRBY', h, 'r', amount)
  redis.call('HSET', h, 'r:' .. ARGV[2], amount)
  redis.call('ZADD', z, ARGV[4], ARGV[2])
end
return {1, 0, 0, 0}
"""

_SETTLE = """
local n = #KEYS / 2
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  local a = redis.call('HGET', h, 'r:' .. ARGV[1])
  if a then
    redis.call('HINCRBY', h, 'r', -tonumber(a))
    redis.call('HDEL', h, 'r:' .. ARGV[1])
  end
  redis.call('ZREM', z, ARGV[1])
  if redis.call('HEXISTS', h, 's') == 1 then redis.call('HINCRBY', h, 's', ARGV[2]) end
end
return 1
"""


MAX_OWED = 10_000  # settles kept for Redis's return while it is down (beyond: the store still has them)


class RedisLedger:
    """Budgets shared by every instance on one Redis; reserve and settle are single Lua scripts.

    ``clock`` times the lease renewals; it must be the clock the callers take ``now`` from. A lease
    is renewed for ``max_hold_seconds`` at most (the longest a call may run), so a reservation whose
    call never settles (a bug, a cancelled task) still frees up in the end.
    """

    def __init__(
        self,
        redis: Any,
        loader: SpendLoader,
        *,
        lease_seconds: float = 15.0,
        max_hold_seconds: float = 900.0,
        prefix: str = "fw:budget",
        clock: Callable[[], float] = time.time,
        health: RedisHealth | None = None,
    ) -> None:
        self._redis = redis
        self._loader = loader
        self._lease = lease_seconds
        self._max_hold = max_hold_seconds
        self._prefix = prefix
        self._clock = clock
        self._health = health
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._pending: set[asyncio.Task[None]] = set()
        self._windows = Windows()
        self._live: dict[str, tuple[float, tuple[str, ...]]] = {}  # rid -> (renew until, sets holding its lease)
        self._beat: asyncio.Task[None] | None = None
        self._owed: list[tuple[Reservation, int]] = []  # settles that failed while Redis was down
        if health is not None:
            health.on_recover(self._settle_owed)

    def _keys(self, scope: str, window: Window) -> tuple[str, str]:
        h = f"{self._prefix}:{scope}:{window.key}"
        return h, h + ":z"

    async def _init(self, scope: str, window: Window, now: float) -> None:
        h, z = self._keys(scope, window)
        spent = to_nano(await self._loader(scope, window.start))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(h, "s", spent)
            pipe.hsetnx(h, "r", 0)
            if window.end is not None:
                ttl = int(window.end - now) + 86400
                pipe.expire(h, ttl)
                pipe.expire(z, ttl)
            await pipe.execute()

    async def reserve(self, lines: Sequence[BudgetLine], amount: int, now: float) -> Reservation | Refusal:
        windows = [self._windows.get(line.period, now) for line in lines]
        keys: list[str] = []
        for line, w in zip(lines, windows, strict=True):
            keys.extend(self._keys(line.scope, w))
        rid = os.urandom(8).hex()
        args: list[Any] = [amount, rid, now, now + self._lease, *(to_nano(line.amount_usd) for line in lines)]
        for _ in range(3):
            ok, idx, s, r = await self._reserve(keys=keys, args=args)
            ok, idx = int(ok), int(idx)
            if ok == 1:
                self._live[rid] = (now + self._max_hold, tuple(keys[1::2]))
                if self._beat is None or self._beat.done():
                    self._beat = asyncio.get_running_loop().create_task(self._heartbeat(), name="fluxway-budget-lease")
                return Reservation(rid, amount, _held(lines, windows))
            if ok == 0:
                return Refusal(lines[idx - 1], windows[idx - 1], int(float(s)), int(float(r)), amount, now)
            await self._init(lines[idx - 1].scope, windows[idx - 1], now)
        raise GatewayError(
            503, "budget store is not answering consistently", type="server_error", code="budget_unavailable"
        )

    async def _heartbeat(self) -> None:
        """Renew the lease of every reservation this ledger holds, every third of the lease, while it holds any."""
        interval = self._lease / 3.0
        while self._live:
            await asyncio.sleep(interval)
            if not self._live or (self._health is not None and not self._health.up):
                continue
            now = self._clock()
            deadline = now + self._lease
            for rid in [rid for rid, (until, _) in self._live.items() if until <= now]:
                del self._live[rid]  # held longer than any call may run: let its lease run out
            by_set: dict[str, dict[str, float]] = {}
            for rid, (_, sets) in self._live.items():
                for z in sets:
                    by_set.setdefault(z, {})[rid] = deadline
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for z, members in by_set.items():
                        pipe.zadd(z, members, xx=True)  # XX: a lease already reclaimed stays reclaimed
                    await pipe.execute()
            except REDIS_FAILURES as exc:
                if self._health is not None:
                    self._health.failed(exc)
                else:
                    log.warning("could not renew %d budget leases: %s", len(self._live), exc)

    def settle(self, res: Reservation, actual: int) -> None:
        self._live.pop(res.rid, None)
        task = asyncio.ensure_future(self._settle_now(res, actual))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle_now(self, res: Reservation, actual: int) -> None:
        keys: list[str] = []
        for scope, wkey in res.buckets:
            h = f"{self._prefix}:{scope}:{wkey}"
            keys.extend((h, h + ":z"))
        for attempt in range(5):
            if self._health is not None and not self._health.up:
                self._owe(res, actual)
                return
            try:
                await self._settle(keys=keys, args=[res.rid, actual])
                return
            except REDIS_FAILURES as exc:
                if self._health is not None:
                    self._health.failed(exc)
                    continue  # owed, settled when Redis is back
                if attempt == 4:
                    log.error("could not settle budget reservation %s: %s (its lease expires)", res.rid, exc)
                    return
                await asyncio.sleep(0.05 * 2**attempt)

    def _owe(self, res: Reservation, actual: int) -> None:
        if len(self._owed) < MAX_OWED:
            self._owed.append((res, actual))

    def _settle_owed(self) -> None:
        owed, self._owed = self._owed, []
        for res, actual in owed:
            self.settle(res, actual)

    async def state(self, line: BudgetLine, now: float) -> tuple[int, int]:
        w = self._windows.get(line.period, now)
        h, _ = self._keys(line.scope, w)
        s, r = await self._redis.hmget(h, ["s", "r"])
        if s is None:
            await self._init(line.scope, w, now)
            s, r = await self._redis.hmget(h, ["s", "r"])
        return int(s or 0), int(r or 0)

    async def drain(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        """Stop renewing leases; what is still held is reclaimed once its lease runs out."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None
