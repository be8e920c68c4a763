"""Rate limits: requests and tokens per minute per key, per team and per (key, model).

The auth hook puts the caller's limits into ``principal.limits``, a list of
``{"scope": "key:<id>" | "team:<id>" | "key:<id>:model:<glob>", "rpm": int | None, "tpm": int | None}``.
``None`` means unlimited; ``0`` refuses every call.

Each (scope, requests|tokens) pair is a bucket of ``limit`` units that drains continuously at
``limit`` units per minute (GCRA, the leaky-bucket form). A call costs 1 request and its estimated
tokens (the prompt's tokens + max_tokens); it is admitted only when *every* bucket it touches has
room, and then it is charged to all of them at once, so a call is allowed exactly up to the threshold
and refused right after. ``post`` settles the token charge to the actual usage (a refund or a debt).

Backends: :class:`MemoryLimiter` (one process; injected clock) and
:class:`fluxway.policy.limits_redis.RedisLimiter` (one Lua script per call, shared by every process).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from fluxway.errors import GatewayError, rate_limited
from fluxway.policy.hooks import CallContext, Outcome, ShortCircuit, Slot
from fluxway.tokens import estimate_prompt_tokens

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from fluxway.config import Config
    from fluxway.redis_client import RedisHealth

WINDOW_S = 60.0
NEVER = math.inf  # wait for a call that can never fit (it costs more than the whole limit)


class Bucket(NamedTuple):
    """One counter a call is charged to: ``key`` names it (scope + kind), ``cost`` is this call's share."""

    key: str
    limit: int
    cost: int


class BucketState(NamedTuple):
    """A bucket after the decision: whole units left, seconds until empty, seconds to wait (0: fits)."""

    remaining: int
    reset_s: float
    wait_s: float


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    states: tuple[BucketState, ...]  # one per bucket, in the order given


class LimiterBackend(Protocol):
    async def acquire(self, buckets: Sequence[Bucket]) -> Decision:
        """Admit (and charge every bucket) or refuse (and charge none), atomically."""
        ...

    async def adjust(self, buckets: Sequence[Bucket]) -> None:
        """Add ``cost`` (negative: a refund) to each bucket without checking its limit."""
        ...


# ---------------------------------------------------------------------------------------------
# The bucket arithmetic, shared by the in-memory backend (the Lua script mirrors it).


def drained(level: float, elapsed_s: float, limit: int, window_s: float) -> float:
    if elapsed_s <= 0:
        return level
    return max(0.0, level - elapsed_s * limit / window_s)


def bucket_state(level: float, limit: int, cost: int, window_s: float, admitted: bool) -> BucketState:
    """``level`` is after the charge when admitted, before it otherwise."""
    if limit <= 0:
        return BucketState(0, 0.0, NEVER)
    remaining = max(0, math.floor(limit - level + 1e-9))
    reset_s = level * window_s / limit
    if admitted or level + cost <= limit:
        wait = 0.0
    elif cost > limit:
        wait = NEVER
    else:
        wait = (level + cost - limit) * window_s / limit
    return BucketState(remaining, reset_s, wait)


class MemoryLimiter:
    """All buckets in this process's memory. ``clock`` returns seconds (monotonic by default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self._clock = clock
        self._window = window_s
        self._levels: dict[str, tuple[float, float, float]] = {}  # key -> (level, at, empty at)
        self._next_sweep = 0.0

    def _level(self, key: str, limit: int, now: float) -> float:
        entry = self._levels.get(key)
        if entry is None or limit <= 0:
            return 0.0
        level, at, _ = entry
        return drained(level, now - at, limit, self._window)

    def acquire_now(self, buckets: Sequence[Bucket]) -> Decision:
        now = self._clock()
        levels = [self._level(key, limit, now) for key, limit, _ in buckets]
        allowed = all(limit > 0 and lv + cost <= limit for (_, limit, cost), lv in zip(buckets, levels, strict=True))
        if allowed:
            for i, (key, limit, cost) in enumerate(buckets):
                levels[i] += cost
                self._levels[key] = (levels[i], now, now + levels[i] * self._window / limit)
            if now >= self._next_sweep:
                self._sweep(now)
        window = self._window
        states = tuple(
            bucket_state(lv, limit, cost, window, allowed) for (_, limit, cost), lv in zip(buckets, levels, strict=True)
        )
        return Decision(allowed, states)

    def adjust_now(self, buckets: Sequence[Bucket]) -> None:
        now = self._clock()
        for b in buckets:
            if b.limit > 0:
                level = self._level(b.key, b.limit, now) + b.cost
                if level > 0:
                    self._levels[b.key] = (level, now, now + level * self._window / b.limit)
                else:
                    self._levels.pop(b.key, None)

    async def acquire(self, buckets: Sequence[Bucket]) -> Decision:
        return self.acquire_now(buckets)

    async def adjust(self, buckets: Sequence[Bucket]) -> None:
        self.adjust_now(buckets)

    def _sweep(self, now: float) -> None:
        """Forget buckets that have drained empty; runs once a window at most."""
        self._next_sweep = now + self._window
        stale = [k for k, (_, _, empty_at) in self._levels.items() if now >= empty_at]
        for k in stale:
            del self._levels[k]

    def __len__(self) -> int:
        return len(self._levels)


# ---------------------------------------------------------------------------------------------
# From the principal's limits to buckets


def as_limit(value: Any) -> int | None:
    """A limit as configured: ``None`` (or junk) is unlimited, negatives count as 0."""
    if value is None:
        return None
    if type(value) is int:
        return value if value > 0 else 0
    if isinstance(value, bool):
        return None
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return None


def applicable(raw_limits: Iterable[Any], model: str) -> list[tuple[str, int | None, int | None]]:
    """``(scope, rpm, tpm)`` of the limits that apply to a call for ``model`` (``:model:<glob>`` scopes)."""
    out: list[tuple[str, int | None, int | None]] = []
    for raw in raw_limits:
        if not isinstance(raw, Mapping):
            continue
        scope = raw.get("scope")
        if not isinstance(scope, str) or not scope:
            continue
        if ":model:" in scope and not fnmatchcase(model, scope.partition(":model:")[2]):
            continue
        rpm, tpm = as_limit(raw.get("rpm")), as_limit(raw.get("tpm"))
        if rpm is not None or tpm is not None:
            out.append((scope, rpm, tpm))
    return out


def estimate_tokens(body: Mapping[str, Any], model: str) -> int:
    """Worst-case tokens of a call before it runs: the prompt's tokens (:mod:`fluxway.tokens`) plus
    the completion allowance."""
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    n = body.get("n") or 1
    try:
        completion_tokens = max(0, int(completion)) * max(1, int(n))
    except (TypeError, ValueError):
        completion_tokens = 0
    return estimate_prompt_tokens(body, model) + completion_tokens


# ---------------------------------------------------------------------------------------------
# Headers


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6.5s``, ``1m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60.0)
    secs = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{secs}s" if minutes else f"{secs}s"


def ratelimit_headers(
    requests: Sequence[tuple[Bucket, BucketState]], tokens: Sequence[tuple[Bucket, BucketState]]
) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers, each kind from its tightest bucket (fewest left, longest reset)."""
    headers: dict[str, str] = {}
    for kind, pairs in (("requests", requests), ("tokens", tokens)):
        if not pairs:
            continue
        b, st = min(pairs, key=lambda p: (p[1].remaining, -p[1].reset_s))
        reset = st.reset_s  # with some left: when the bucket is full again (OpenAI's meaning)
        if st.remaining <= 0 and b.limit > 0:
            # None left: when the next one is allowed, which is what retry-after says on a refusal.
            reset = max(0.0, st.reset_s - (b.limit - 1) * WINDOW_S / b.limit)
        headers[f"x-ratelimit-limit-{kind}"] = str(b.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(st.remaining)
        headers[f"x-ratelimit-reset-{kind}"] = duration(reset)
    return headers


# ---------------------------------------------------------------------------------------------
# The hook


@dataclass(slots=True)
class _Charged:
    tokens: list[Bucket]  # token buckets charged, cost = tokens reserved


CHARGED: Slot[_Charged] = Slot("limits.charged")  # the tokens a call reserved, settled in post


class RateLimitHook:
    """``pre`` admits or refuses (429) and reserves tokens; ``post`` settles tokens to the actual usage."""

    name = "limits"

    def __init__(self, backend: LimiterBackend) -> None:
        self.backend = backend

    def buckets(self, limits: Iterable[Any], model: str, body: Mapping[str, Any]) -> tuple[list[Bucket], list[Bucket]]:
        """The request buckets and token buckets a call is charged to."""
        specs = applicable(limits, model)
        requests = [Bucket(f"{scope}|r", rpm, 1) for scope, rpm, _ in specs if rpm is not None]
        if not any(tpm is not None for _, _, tpm in specs):
            return requests, []
        cost = estimate_tokens(body, model)
        return requests, [Bucket(f"{scope}|t", tpm, cost) for scope, _, tpm in specs if tpm is not None]

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        principal = ctx.principal
        if principal is None:
            return None
        limits = principal.limits
        if not limits:
            return None
        req_buckets, tok_buckets = self.buckets(limits, ctx.request.model, ctx.request.body)
        if not req_buckets and not tok_buckets:
            return None
        everything = [*req_buckets, *tok_buckets]
        decision = await self.backend.acquire(everything)
        n = len(req_buckets)
        headers = ratelimit_headers(
            list(zip(req_buckets, decision.states[:n], strict=True)),
            list(zip(tok_buckets, decision.states[n:], strict=True)),
        )
        if not decision.allowed:
            raise _refusal(everything, decision, headers)
        ctx.response_headers.update(headers)
        if tok_buckets:
            ctx.put(CHARGED, _Charged(tok_buckets))
        return None

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        charged = ctx.pop(CHARGED)
        if charged is None:
            return
        if outcome.usage is not None:
            actual = outcome.usage.total_tokens
        elif outcome.error is not None or outcome.status >= 400:
            actual = 0  # nothing was generated: give the reservation back
        else:
            return  # a success without usage: keep the estimate
        fixes = [Bucket(b.key, b.limit, actual - b.cost) for b in charged.tokens if actual != b.cost]
        if fixes:
            await self.backend.adjust(fixes)


def _refusal(buckets: Sequence[Bucket], decision: Decision, headers: dict[str, str]) -> GatewayError:
    worst = max(range(len(buckets)), key=lambda i: decision.states[i].wait_s)
    b, s = buckets[worst], decision.states[worst]
    scope, _, kind = b.key.rpartition("|")
    unit = "requests" if kind == "r" else "tokens"
    if s.wait_s == NEVER:
        if b.limit <= 0:
            message = f"rate limit for {scope}: no {unit} allowed"
        else:
            message = f"request too large for {scope}: needs ~{b.cost} tokens, the limit is {b.limit} tokens per minute"
        retry = WINDOW_S
    else:
        message = f"rate limit exceeded for {scope}: {b.limit} {unit} per minute; retry in {s.wait_s:.2f}s"
        retry = s.wait_s
    extra = dict(headers)
    extra["retry-after-ms"] = str(max(1, math.ceil(retry * 1000)))
    return rate_limited(message, retry, extra)


def build_rate_limiter(cfg: Config, redis: Redis | None, health: RedisHealth | None = None) -> RateLimitHook:
    """Redis-backed (shared by every process) when a client is given, else in this process's memory.
    ``health`` (shared with the budget ledger) carries ``redis.on_failure``."""
    if redis is not None:
        from fluxway.policy.limits_redis import RedisLimiter
        from fluxway.redis_client import RedisHealth

        if health is None:
            health = RedisHealth(redis, on_failure=cfg.redis.on_failure)
        return RateLimitHook(RedisLimiter(redis, health=health))
    return RateLimitHook(MemoryLimiter())


__all__ = [
    "Bucket",
    "BucketState",
    "Decision",
    "LimiterBackend",
    "MemoryLimiter",
    "RateLimitHook",
    "applicable",
    "as_limit",
    "build_rate_limiter",
    "duration",
    "estimate_tokens",
    "ratelimit_headers",
]
