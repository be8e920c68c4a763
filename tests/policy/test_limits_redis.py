"""The Redis rate-limit backend against a real Redis (tests/support/services.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from fluxway.canonical import CanonicalRequest, Endpoint, Usage
from fluxway.config import parse
from fluxway.errors import GatewayError
from fluxway.policy.hooks import CallContext, Outcome, Principal
from fluxway.policy.limits import NEVER, Bucket, MemoryLimiter, RateLimitHook, build_rate_limiter
from fluxway.policy.limits_redis import KEY_PREFIX, RedisLimiter
from fluxway.redis_client import create_redis
from tests.policy.test_limits import TEN_TOKENS


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis(clean_redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(clean_redis_url)
    yield client
    await client.aclose()


def ctx_for(limits: list[dict[str, Any]], body: dict[str, Any] | None = None) -> CallContext:
    body = body or {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}
    req = CanonicalRequest(Endpoint.CHAT, "smart", body)
    return CallContext("r", "openai", {}, "sk", req, principal=Principal(id="k1", limits=limits))


async def admitted(hook: RateLimitHook, limits: list[dict[str, Any]]) -> bool:
    try:
        await hook.pre(ctx_for(limits))
    except GatewayError as err:
        assert err.status == 429
        assert int(err.headers["retry-after"]) >= 1
        return False
    return True


async def test_exactly_the_limit_under_100_concurrent_calls(redis: Redis) -> None:
    hook = build_rate_limiter(parse({}), redis)  # the server's clock, as in production
    assert isinstance(hook.backend, RedisLimiter)
    limits = [{"scope": "key:k1", "rpm": 50}]
    results = await asyncio.gather(*(admitted(hook, limits) for _ in range(100)))
    assert sum(results) == 50
    assert not await admitted(hook, limits)


async def test_two_processes_sharing_redis_enforce_one_limit(clean_redis_url: str) -> None:
    # Two clients, two limiters: what two gateway processes hold.
    a, b = create_redis(clean_redis_url), create_redis(clean_redis_url)
    try:
        hooks = [RateLimitHook(RedisLimiter(a)), RateLimitHook(RedisLimiter(b))]
        limits = [{"scope": "key:k1", "rpm": 30}, {"scope": "team:t", "rpm": 1000, "tpm": 100000}]
        results = await asyncio.gather(*(admitted(hooks[i % 2], limits) for i in range(100)))
        assert sum(results) == 30
    finally:
        await a.aclose()
        await b.aclose()


async def test_window_slides_on_the_injected_clock(redis: Redis) -> None:
    clock = Clock()
    hook = RateLimitHook(RedisLimiter(redis, clock=clock))
    limits = [{"scope": "key:k1", "rpm": 5}]
    for _ in range(5):
        assert await admitted(hook, limits)
    with pytest.raises(GatewayError) as info:
        await hook.pre(ctx_for(limits))
    assert info.value.headers["retry-after"] == "12"
    assert info.value.headers["retry-after-ms"] == "12000"
    assert info.value.headers["x-ratelimit-reset-requests"] == "12s"  # agrees with retry-after
    clock.now += 11.9
    assert not await admitted(hook, limits)
    clock.now += 0.1
    assert await admitted(hook, limits)
    assert not await admitted(hook, limits)


async def test_headers_and_token_settlement(redis: Redis) -> None:
    clock = Clock()
    hook = RateLimitHook(RedisLimiter(redis, clock=clock))
    limits = [{"scope": "key:k1", "rpm": 10, "tpm": 100}]
    body = {"model": "smart", "messages": [{"role": "user", "content": TEN_TOKENS}], "max_tokens": 30}
    ctx = ctx_for(limits, body)
    await hook.pre(ctx)
    assert ctx.response_headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "60",
        "x-ratelimit-reset-tokens": "24s",
    }
    await hook.post(ctx, Outcome(200, usage=Usage(prompt_tokens=5, completion_tokens=5)))
    ctx = ctx_for(limits, body)
    await hook.pre(ctx)
    assert ctx.response_headers["x-ratelimit-remaining-tokens"] == "50"
    await hook.post(ctx, Outcome(500, error=GatewayError(500, "boom")))
    ctx = ctx_for(limits, body)
    await hook.pre(ctx)
    assert ctx.response_headers["x-ratelimit-remaining-tokens"] == "50"


async def test_buckets_live_under_the_prefix_and_expire_when_drained(redis: Redis) -> None:
    limiter = RedisLimiter(redis)
    assert (await limiter.acquire([Bucket("key:k1|r", 60, 30)])).allowed
    keys = [k.decode() async for k in redis.scan_iter("*")]
    assert keys == [KEY_PREFIX + "key:k1|r"]
    ttl = await redis.pttl(KEY_PREFIX + "key:k1|r")
    assert 29_000 < ttl <= 31_000  # 30 units draining 1 per second, plus a second of slack
    await limiter.adjust([Bucket("key:k1|r", 60, -30)])  # refunded to empty: the key goes away
    assert await redis.exists(KEY_PREFIX + "key:k1|r") == 0


async def test_unreachable_redis_falls_back_to_per_process_limits(caplog: pytest.LogCaptureFixture) -> None:
    client = create_redis("redis://127.0.0.1:1/0", connect_timeout=0.5)
    try:
        hook = RateLimitHook(RedisLimiter(client))
        limits = [{"scope": "key:k1", "rpm": 2}]
        with caplog.at_level(logging.WARNING, "fluxway.limits"):
            assert await admitted(hook, limits)
            assert await admitted(hook, limits)
            assert not await admitted(hook, limits)
        assert sum("Redis unavailable" in r.message for r in caplog.records) == 1
    finally:
        await client.aclose()


# The Lua script and the in-memory limiter are the same arithmetic: any sequence of calls gets the
# same decisions, remaining counts and waits (to the millisecond Redis reports) from both.
_op = st.one_of(
    st.tuples(st.just("advance"), st.floats(0, 40)),
    st.tuples(
        st.just("acquire"),
        st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 40)), min_size=1, max_size=3),
    ),
    st.tuples(st.just("adjust"), st.sampled_from(["a", "b", "c"]), st.integers(-30, 30)),
)
_LIMITS = {"a": 5, "b": 30, "c": 0}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, max_size=25))
async def test_redis_and_memory_agree(redis: Redis, ops: list[Any]) -> None:
    await redis.flushdb()
    clock = Clock()
    mem, red = MemoryLimiter(clock), RedisLimiter(redis, clock=clock)
    for op in ops:
        if op[0] == "advance":
            clock.now += op[1]
        elif op[0] == "adjust":
            bucket = [Bucket(op[1], _LIMITS[op[1]], op[2])]
            await mem.adjust(bucket)
            await red.adjust(bucket)
        else:
            seen: dict[str, Bucket] = {}
            for name, cost in op[1]:
                seen[name] = Bucket(name, _LIMITS[name], cost)
            buckets = list(seen.values())
            m, r = await mem.acquire(buckets), await red.acquire(buckets)
            assert m.allowed == r.allowed
            for ms, rs in zip(m.states, r.states, strict=True):
                assert ms.remaining == rs.remaining
                assert abs(ms.reset_s - rs.reset_s) <= 0.0011
                if ms.wait_s == NEVER:
                    assert rs.wait_s == NEVER
                else:
                    assert abs(ms.wait_s - rs.wait_s) <= 0.0011


async def test_closed_policy_refuses_with_503_while_redis_is_unreachable() -> None:
    from fluxway.redis_client import RedisHealth

    client = create_redis("redis://127.0.0.1:1/0", connect_timeout=0.5)
    try:
        health = RedisHealth(client, on_failure="closed")
        hook = RateLimitHook(RedisLimiter(client, health=health))
        for _ in range(3):
            with pytest.raises(GatewayError) as err:
                await hook.pre(ctx_for([{"scope": "key:k1", "rpm": 2}]))
            assert err.value.status == 503 and err.value.code == "redis_unavailable"
            assert int(err.value.headers["retry-after"]) >= 1
        assert not health.up and health.outages == 1 and health.refused == 3
        await health.close()
    finally:
        await client.aclose()
