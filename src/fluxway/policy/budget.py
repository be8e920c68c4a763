"""Budgets that never overshoot: reserve a call's worst-case cost first, settle to the real cost after.

Amounts are integer nano-dollars so that reservations add and subtract exactly. A budget line
(``key:<id>`` or ``team:<name>``, an amount and a period) maps to one bucket per period (UTC day,
UTC month, or all time) holding what was spent and what is reserved by calls in flight.

- :class:`MemoryLedger` (one instance): the check-and-reserve over every bucket of a call runs
  without an ``await`` in between, so it is atomic on the event loop.
- :class:`~fluxway.policy.budget_redis.RedisLedger` (several instances): one Lua script checks and
  reserves every bucket atomically. A reservation is a lease (``redis.lease_s``, 15 s by default):
  one heartbeat task per ledger renews the leases of the calls still running, so a call may run as
  long as it likes while a crashed instance's holds are reclaimed by the next reserve about
  ``lease_s`` after its last beat.
- :class:`FallbackLedger` (what a gateway with ``redis.url`` runs): the Redis ledger while Redis
  answers; while it is down, ``redis.on_failure`` decides: ``open`` reserves on a per-process
  :class:`MemoryLedger` (started from the store's spend), ``closed`` answers 503 ``redis_unavailable``.

A bucket starts from the spend recorded in the store (usage records), so spend survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from fluxway.canonical import Endpoint, Usage
from fluxway.errors import GatewayError, model_unpriced, rate_limited
from fluxway.policy.budget_cap import affordable_output, cap_output
from fluxway.policy.hooks import CallContext, Outcome, ShortCircuit, Slot
from fluxway.policy.keys import BudgetLine
from fluxway.policy.pricing import PriceInfo, Pricer, call_cost, cost_usd
from fluxway.redis_client import REDIS_FAILURES, RedisHealth
from fluxway.tokens import worst_case_prompt_tokens

if TYPE_CHECKING:
    from fluxway.events import EventBus
    from fluxway.policy.budget_redis import RedisLedger

log = logging.getLogger("fluxway.budget")

NANO = 1_000_000_000
THRESHOLDS: tuple[int, ...] = (50, 80, 100)  # budget.threshold events, % of a budget spent
SpendLoader = Callable[[str, float | None], Awaitable[float]]  # (scope, since) -> USD spent


def to_nano(usd: float) -> int:
    return round(usd * NANO)


@dataclass(frozen=True, slots=True)
class Window:
    key: str  # "d:2025-01-31" | "m:2025-01" | "total"
    start: float | None
    end: float | None


def period_window(period: str, now: float) -> Window:
    dt = datetime.fromtimestamp(now, UTC)
    if period == "daily":
        start = dt.replace(hour=0, minute=0, second=0, microsecond=0)
        return Window(f"d:{start:%Y-%m-%d}", start.timestamp(), (start + timedelta(days=1)).timestamp())
    if period == "monthly":
        start = dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return Window(f"m:{start:%Y-%m}", start.timestamp(), nxt.timestamp())
    return Window("total", None, None)


class Windows:
    """``period_window`` memoised until the window ends (formatting dates costs ~15 us a call)."""

    def __init__(self) -> None:
        self._cache: dict[str, Window] = {}

    def get(self, period: str, now: float) -> Window:
        w = self._cache.get(period)
        if w is not None and (w.start is None or (w.start <= now < w.end)):  # type: ignore[operator]
            return w
        w = period_window(period, now)
        self._cache[period] = w
        return w


@dataclass(slots=True)
class Reservation:
    rid: str
    amount: int
    buckets: tuple[tuple[str, str], ...]  # (scope, window key) of each bucket held
    local: bool = False  # held by the per-process fallback ledger while Redis was down


RESERVATION: Slot[Reservation] = Slot("budget.reservation")  # held from pre to post


@dataclass(frozen=True, slots=True)
class Refusal:
    line: BudgetLine
    window: Window
    spent: int
    reserved: int
    needed: int
    now: float

    @property
    def retry_after(self) -> float:
        limit = to_nano(self.line.amount_usd)
        if self.spent + self.needed <= limit:
            return 1.0  # calls in flight hold the rest; it frees up when they finish
        if self.window.end is not None:
            return max(1.0, self.window.end - self.now)
        return 3600.0

    def error(self) -> GatewayError:
        line = self.line
        err = rate_limited(
            f"budget exceeded for {line.scope}: ${self.spent / NANO:.6f} spent and ${self.reserved / NANO:.6f} "
            f"reserved of ${line.amount_usd:.6f} ({line.period}); this call may cost up to ${self.needed / NANO:.6f}",
            self.retry_after,
        )
        err.code = "budget_exceeded"
        return err


def _bucket_id(scope: str, window: Window) -> str:
    return f"{scope}|{window.key}"


def _held(lines: Sequence[BudgetLine], windows: Sequence[Window]) -> tuple[tuple[str, str], ...]:
    return tuple((ln.scope, w.key) for ln, w in zip(lines, windows, strict=True))


class Ledger(Protocol):
    async def reserve(self, lines: Sequence[BudgetLine], amount: int, now: float) -> Reservation | Refusal: ...

    def settle(self, res: Reservation, actual: int) -> None:
        """Release the reservation and charge the actual cost (may complete in the background)."""
        ...

    async def state(self, line: BudgetLine, now: float) -> tuple[int, int]:
        """(spent, reserved) of a line's current bucket."""
        ...

    async def drain(self) -> None:
        """Wait for settles still completing in the background."""
        ...

    async def close(self) -> None:
        """Stop background work (leases are no longer renewed)."""
        ...


class MemoryLedger:
    def __init__(self, loader: SpendLoader) -> None:
        self._loader = loader
        self._buckets: dict[str, list[int]] = {}  # id -> [spent, reserved]
        self._current: dict[str, str] = {}  # scope -> id of its bucket for the current window
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._windows = Windows()
        self._ids = itertools.count(1)

    async def _ensure(self, scope: str, window: Window) -> None:
        bid = _bucket_id(scope, window)
        if bid in self._buckets:
            return
        pending = self._loading.get(bid)
        if pending is not None:
            await asyncio.shield(pending)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[bid] = fut
        try:
            spent = await self._loader(scope, window.start)
            if bid not in self._buckets:
                self._buckets[bid] = [to_nano(spent), 0]
            old = self._current.get(scope)
            self._current[scope] = bid
            if old is not None and old != bid and self._buckets.get(old, [0, 0])[1] <= 0:
                self._buckets.pop(old, None)
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._loading.pop(bid, None)

    async def reserve(self, lines: Sequence[BudgetLine], amount: int, now: float) -> Reservation | Refusal:
        windows = [self._windows.get(line.period, now) for line in lines]
        ids = [_bucket_id(line.scope, w) for line, w in zip(lines, windows, strict=True)]
        buckets = self._buckets
        for _ in range(3):
            if all(i in buckets for i in ids):
                break
            for line, w in zip(lines, windows, strict=True):
                await self._ensure(line.scope, w)
        # From here to the return there is no await: check-and-reserve is atomic.
        held: list[list[int]] = []
        for line, w, bid in zip(lines, windows, ids, strict=True):
            b = self._buckets[bid]
            limit = to_nano(line.amount_usd)
            if b[0] >= limit or b[0] + b[1] + amount > limit:
                return Refusal(line, w, b[0], b[1], amount, now)
            held.append(b)
        for b in held:
            b[1] += amount
        return Reservation(str(next(self._ids)), amount, _held(lines, windows))

    def settle(self, res: Reservation, actual: int) -> None:
        for scope, wkey in res.buckets:
            b = self._buckets.get(f"{scope}|{wkey}")
            if b is not None:
                b[1] -= res.amount
                b[0] += actual

    async def state(self, line: BudgetLine, now: float) -> tuple[int, int]:
        w = self._windows.get(line.period, now)
        await self._ensure(line.scope, w)
        b = self._buckets[_bucket_id(line.scope, w)]
        return b[0], b[1]

    async def drain(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def forget_idle(self) -> None:
        """Drop every bucket no call holds: the next use reloads it from the store."""
        for bid in [bid for bid, b in self._buckets.items() if b[1] <= 0]:
            del self._buckets[bid]
        self._current = {scope: bid for scope, bid in self._current.items() if bid in self._buckets}


class FallbackLedger:
    """The Redis ledger while Redis answers; while it is down, the health's ``on_failure`` policy:
    a per-process :class:`MemoryLedger` (``open``) or 503 ``redis_unavailable`` (``closed``).

    The local ledger's buckets start from the store's spend and are dropped when Redis is back, so
    each outage starts from what is recorded. Calls served locally are not in Redis's reservations:
    during an outage each instance holds the budget on its own.
    """

    def __init__(self, shared: RedisLedger, local: MemoryLedger, health: RedisHealth) -> None:
        self.shared = shared
        self.local = local
        self._health = health
        health.on_recover(local.forget_idle)

    async def reserve(self, lines: Sequence[BudgetLine], amount: int, now: float) -> Reservation | Refusal:
        health = self._health
        if health.up:
            try:
                return await self.shared.reserve(lines, amount, now)
            except REDIS_FAILURES as exc:
                health.failed(exc)
        health.fallback("budget")  # closed: raises 503 redis_unavailable
        res = await self.local.reserve(lines, amount, now)
        if isinstance(res, Reservation):
            res.local = True
        return res

    def settle(self, res: Reservation, actual: int) -> None:
        if res.local:
            self.local.settle(res, actual)
        else:
            self.shared.settle(res, actual)

    async def state(self, line: BudgetLine, now: float) -> tuple[int, int]:
        if self._health.up:
            try:
                return await self.shared.state(line, now)
            except REDIS_FAILURES as exc:
                self._health.failed(exc)
        return await self.local.state(line, now)

    async def drain(self) -> None:
        await self.shared.drain()

    async def close(self) -> None:
        await self.shared.close()


def worst_case_tokens(ctx: CallContext, default_output: int) -> Usage:
    """The most a call can use: its prompt's tokens (with a margin where the model's own tokenizer is
    not available) plus its output cap."""
    body = ctx.request.body
    prompt = worst_case_prompt_tokens(body, ctx.request.model)
    if ctx.request.endpoint is Endpoint.EMBEDDINGS:
        return Usage(prompt_tokens=prompt)
    out = default_output
    for name in ("max_completion_tokens", "max_tokens"):
        v = body.get(name)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            out = v
            break
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        out *= n
    return Usage(prompt_tokens=prompt, completion_tokens=out)


class BudgetHook:
    """Reserves before the call, settles after. When the worst case does not fit what is left, the
    call's output limit is capped to what the budget can pay for; 429 ``budget_exceeded`` only when
    not even the prompt and :data:`MIN_CAPPED_OUTPUT` tokens fit."""

    name = "budget"

    def __init__(
        self,
        ledger: Ledger,
        pricer: Pricer,
        clock: Callable[[], float] = time.time,
        *,
        allow_unpriced: bool = False,
    ) -> None:
        self.ledger = ledger
        self._pricer = pricer
        self._clock = clock
        self._allow_unpriced = allow_unpriced
        # Set when event sinks are configured: `budget.threshold` at THRESHOLDS % of a budget.
        self.events: EventBus | None = None
        self._crossed: dict[str, tuple[str, set[int]]] = {}  # scope -> (window key, thresholds emitted)

    def _price(self, ctx: CallContext) -> PriceInfo:
        """The most expensive price the call may reach; refuses a model any of whose targets is
        unpriced (it would be metered at $0 against the budget) unless unpriced models are allowed."""
        info = self._pricer.worst_case(ctx.request.model)
        if not info.known and not self._allow_unpriced:
            raise model_unpriced(ctx.request.model)
        return info

    def worst_case(self, ctx: CallContext) -> int:
        """The most the call may cost, in nano-USD."""
        info = self._price(ctx)
        return math.ceil(cost_usd(info.price, worst_case_tokens(ctx, info.max_output_tokens)) * NANO)

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        p = ctx.principal
        if p is None:
            return None
        lines = p.budgets
        if not lines:
            return None
        info = self._price(ctx)
        usage = worst_case_tokens(ctx, info.max_output_tokens)
        now = self._clock()
        res = await self.ledger.reserve(lines, math.ceil(cost_usd(info.price, usage) * NANO), now)
        for _ in range(len(lines) + 1):  # each budget line may call for a tighter cap
            if not isinstance(res, Refusal):
                break
            cap = affordable_output(ctx, info, usage, (to_nano(res.line.amount_usd) - res.spent - res.reserved) / NANO)
            if cap is None:
                break
            usage = cap_output(ctx, usage, cap)
            res = await self.ledger.reserve(lines, math.ceil(cost_usd(info.price, usage) * NANO), now)
        if isinstance(res, Refusal):
            raise res.error()
        ctx.put(RESERVATION, res)
        return None

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        res = ctx.pop(RESERVATION)
        if res is None:
            return
        cost = call_cost(self._pricer, ctx, outcome)
        self.ledger.settle(res, to_nano(cost.usd))
        if self.events is not None and ctx.principal is not None:
            try:
                await self._thresholds(ctx.principal.budgets)
            except Exception as exc:  # the ledger unreachable: the next call looks again
                log.debug("budget thresholds not checked: %s", exc)

    async def _thresholds(self, lines: Sequence[BudgetLine]) -> None:
        """Emit ``budget.threshold`` once per budget period for each of :data:`THRESHOLDS` the
        line's spend has reached (its event id names scope, period and threshold, so instances
        sharing the store deliver it once too)."""
        assert self.events is not None
        now = self._clock()
        for line in lines:
            spent, _ = await self.ledger.state(line, now)
            limit = to_nano(line.amount_usd)
            if limit <= 0:
                continue
            pct = spent * 100.0 / limit
            if pct < THRESHOLDS[0]:
                continue
            window = period_window(line.period, now)
            seen = self._crossed.get(line.scope)
            if seen is None or seen[0] != window.key:
                seen = self._crossed[line.scope] = (window.key, set())
            for t in THRESHOLDS:
                if pct >= t and t not in seen[1]:
                    seen[1].add(t)
                    kind, _, ident = line.scope.partition(":")
                    self.events.emit("budget.threshold", {
                        "scope": kind, kind: ident, "threshold_pct": t, "period": line.period,
                        "window": window.key, "budget_usd": line.amount_usd, "spent_usd": spent / NANO,
                        "used_pct": round(pct, 2),
                    }, id=f"budget:{line.scope}:{window.key}:{t}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ledger.drain()
        with contextlib.suppress(Exception):
            await self.ledger.close()
