"""The rate-limit hook and its in-memory backend, driven by a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from fluxway.canonical import CanonicalRequest, Endpoint, Usage
from fluxway.config import parse
from fluxway.errors import GatewayError
from fluxway.policy.hooks import CallContext, Outcome, Principal
from fluxway.policy.limits import (
    NEVER,
    Bucket,
    MemoryLimiter,
    RateLimitHook,
    build_rate_limiter,
    duration,
    estimate_tokens,
)

# Ten prompt tokens as OpenAI frames a chat: 3 for the message, 1 for the role, 3 of content, 3 priming.
TEN_TOKENS = "one two three"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ctx_for(
    limits: list[dict[str, Any]] | None,
    *,
    model: str = "smart",
    body: dict[str, Any] | None = None,
    key: str = "k1",
) -> CallContext:
    body = body if body is not None else {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    principal = Principal(id=key, limits=limits or ())
    req = CanonicalRequest(Endpoint.CHAT, model, body)
    return CallContext("req-1", "openai", {}, "sk-x", req, principal=principal)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hook(clock: Clock) -> RateLimitHook:
    return RateLimitHook(MemoryLimiter(clock))


async def admitted(hook: RateLimitHook, ctx: CallContext) -> bool:
    try:
        await hook.pre(ctx)
    except GatewayError as err:
        assert err.status == 429
        return False
    return True


async def test_rpm_allows_exactly_the_limit_then_429_with_retry_after(hook: RateLimitHook) -> None:
    limits = [{"scope": "key:k1", "rpm": 5, "tpm": None}]
    for i in range(5):
        ctx = ctx_for(limits)
        assert await hook.pre(ctx) is None
        assert ctx.response_headers["x-ratelimit-limit-requests"] == "5"
        assert ctx.response_headers["x-ratelimit-remaining-requests"] == str(4 - i)
        assert "x-ratelimit-limit-tokens" not in ctx.response_headers
    with pytest.raises(GatewayError) as info:
        await hook.pre(ctx_for(limits))
    err = info.value
    assert err.status == 429
    assert err.code == "rate_limit_exceeded"
    assert err.type == "rate_limit_error"
    # One request drains every 60/5 = 12 s: the sixth fits again in exactly 12 s.
    assert err.headers["retry-after"] == "12"
    assert err.headers["retry-after-ms"] == "12000"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.headers["x-ratelimit-reset-requests"] == "12s"  # agrees with retry-after (issue 10)
    assert "key:k1" in err.message


async def test_window_slides_one_request_per_interval(hook: RateLimitHook, clock: Clock) -> None:
    limits = [{"scope": "key:k1", "rpm": 5}]
    for _ in range(5):
        assert await admitted(hook, ctx_for(limits))
    clock.advance(11.9)
    assert not await admitted(hook, ctx_for(limits))
    clock.advance(0.1)  # 12 s: exactly one request has drained
    assert await admitted(hook, ctx_for(limits))
    assert not await admitted(hook, ctx_for(limits))
    clock.advance(60)  # a whole window: the bucket is empty again
    for _ in range(5):
        assert await admitted(hook, ctx_for(limits))
    assert not await admitted(hook, ctx_for(limits))


async def test_refused_calls_are_not_counted(hook: RateLimitHook, clock: Clock) -> None:
    limits = [{"scope": "key:k1", "rpm": 2}]
    assert await admitted(hook, ctx_for(limits))
    assert await admitted(hook, ctx_for(limits))
    for _ in range(10):  # hammering while limited does not push the reset further away
        assert not await admitted(hook, ctx_for(limits))
    clock.advance(30)
    assert await admitted(hook, ctx_for(limits))


async def test_tpm_reserves_the_estimate_and_reports_token_headers(hook: RateLimitHook) -> None:
    limits = [{"scope": "key:k1", "rpm": None, "tpm": 100}]
    body = {"model": "smart", "messages": [{"role": "user", "content": TEN_TOKENS}], "max_tokens": 30}
    assert estimate_tokens(body, "smart") == 40  # 10 prompt tokens + 30
    ctx = ctx_for(limits, body=body)
    await hook.pre(ctx)
    assert ctx.response_headers["x-ratelimit-limit-tokens"] == "100"
    assert ctx.response_headers["x-ratelimit-remaining-tokens"] == "60"
    assert ctx.response_headers["x-ratelimit-reset-tokens"] == "24s"
    assert "x-ratelimit-limit-requests" not in ctx.response_headers
    assert await admitted(hook, ctx_for(limits, body=body))  # 80 of 100
    with pytest.raises(GatewayError) as info:
        await hook.pre(ctx_for(limits, body=body))
    # 80 + 40 - 100 = 20 tokens over; 100 tokens drain per minute -> 12 s.
    assert info.value.headers["retry-after"] == "12"
    assert "tokens per minute" in info.value.message


async def test_post_settles_tokens_to_actual_usage(hook: RateLimitHook) -> None:
    limits = [{"scope": "key:k1", "tpm": 100}]
    body = {"model": "smart", "messages": [{"role": "user", "content": TEN_TOKENS}], "max_tokens": 30}
    first = ctx_for(limits, body=body)
    await hook.pre(first)
    await hook.pre(ctx_for(limits, body=body))
    assert not await admitted(hook, ctx_for(limits, body=body))
    # The first call used 12 tokens, not 40: 28 come back, and a 40-token call fits again.
    await hook.post(first, Outcome(200, usage=Usage(prompt_tokens=10, completion_tokens=2)))
    ctx = ctx_for(limits, body=body)
    await hook.pre(ctx)
    assert ctx.response_headers["x-ratelimit-remaining-tokens"] == "8"
    # A call that used more than its estimate is charged the difference (a debt).
    await hook.post(ctx, Outcome(200, usage=Usage(prompt_tokens=10, completion_tokens=38)))
    assert not await admitted(hook, ctx_for(limits, body={"model": "smart", "prompt": "x"}))


async def test_failed_call_gives_its_reservation_back(hook: RateLimitHook) -> None:
    limits = [{"scope": "key:k1", "tpm": 50}]
    body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
    ctx = ctx_for(limits, body=body)
    await hook.pre(ctx)
    assert not await admitted(hook, ctx_for(limits, body=body))
    await hook.post(ctx, Outcome(502, error=GatewayError(502, "upstream failed")))
    assert await admitted(hook, ctx_for(limits, body=body))


async def test_success_without_usage_keeps_the_estimate(hook: RateLimitHook) -> None:
    limits = [{"scope": "key:k1", "tpm": 50}]
    body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
    ctx = ctx_for(limits, body=body)
    await hook.pre(ctx)
    await hook.post(ctx, Outcome(200))
    assert not await admitted(hook, ctx_for(limits, body=body))


async def test_team_limit_is_shared_and_a_refusal_charges_no_bucket(hook: RateLimitHook) -> None:
    def limits(key: str) -> list[dict[str, Any]]:
        return [{"scope": f"key:{key}", "rpm": 2}, {"scope": "team:t", "rpm": 3}]

    assert await admitted(hook, ctx_for(limits("a"), key="a"))
    assert await admitted(hook, ctx_for(limits("a"), key="a"))
    assert not await admitted(hook, ctx_for(limits("a"), key="a"))  # key a's own limit
    assert await admitted(hook, ctx_for(limits("b"), key="b"))  # team: 3 of 3
    with pytest.raises(GatewayError) as info:
        await hook.pre(ctx_for(limits("b"), key="b"))
    assert "team:t" in info.value.message
    # The refusal above charged nothing to key b: with a bigger team limit, b has 1 left.
    bigger = [{"scope": "key:b", "rpm": 2}, {"scope": "team:t2", "rpm": 10}]
    assert await admitted(hook, ctx_for(bigger, key="b"))
    assert not await admitted(hook, ctx_for(bigger, key="b"))


async def test_headers_report_the_tightest_scope(hook: RateLimitHook) -> None:
    limits = [{"scope": "key:k1", "rpm": 10}, {"scope": "team:t", "rpm": 3}]
    ctx = ctx_for(limits)
    await hook.pre(ctx)
    assert ctx.response_headers["x-ratelimit-limit-requests"] == "3"
    assert ctx.response_headers["x-ratelimit-remaining-requests"] == "2"
    assert ctx.response_headers["x-ratelimit-reset-requests"] == "20s"


async def test_key_model_limits_apply_to_their_model_only(hook: RateLimitHook) -> None:
    limits = [{"scope": "key:k1:model:gpt-4*", "rpm": 1}]
    assert await admitted(hook, ctx_for(limits, model="gpt-4o"))
    assert not await admitted(hook, ctx_for(limits, model="gpt-4o-mini"))  # same glob, same bucket
    for _ in range(5):
        ctx = ctx_for(limits, model="cheap")
        assert await admitted(hook, ctx)
        assert ctx.response_headers == {}


async def test_call_larger_than_the_whole_limit_is_refused_with_a_clear_message(hook: RateLimitHook) -> None:
    limits = [{"scope": "key:k1", "tpm": 1000}]
    body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}
    with pytest.raises(GatewayError) as info:
        await hook.pre(ctx_for(limits, body=body))
    assert info.value.status == 429
    assert "too large" in info.value.message
    assert info.value.headers["retry-after"] == "60"


async def test_zero_limit_refuses_everything(hook: RateLimitHook) -> None:
    with pytest.raises(GatewayError) as info:
        await hook.pre(ctx_for([{"scope": "team:frozen", "rpm": 0}]))
    assert "no requests allowed" in info.value.message


async def test_no_limits_means_no_headers_and_no_state(clock: Clock) -> None:
    backend = MemoryLimiter(clock)
    hook = RateLimitHook(backend)
    for limits in (None, [], [{"scope": "key:k1", "rpm": None, "tpm": None}], [{"rpm": 5}], ["junk"]):
        ctx = ctx_for(limits)
        assert await hook.pre(ctx) is None
        assert ctx.response_headers == {}
        await hook.post(ctx, Outcome(200, usage=Usage(1, 1)))
    ctx = ctx_for(None)
    ctx.principal = None
    assert await hook.pre(ctx) is None
    assert len(backend) == 0


def test_memory_limiter_forgets_idle_buckets(clock: Clock) -> None:
    backend = MemoryLimiter(clock)
    for i in range(50):
        assert backend.acquire_now([Bucket(f"key:{i}|r", 5, 1)]).allowed
    assert len(backend) == 50
    clock.advance(61)
    assert backend.acquire_now([Bucket("key:new|r", 5, 1)]).allowed
    assert len(backend) == 1


def test_a_debt_beyond_the_limit_outlives_the_sweep(clock: Clock) -> None:
    backend = MemoryLimiter(clock)
    backend.adjust_now([Bucket("a|t", 5, 6)])  # a call used 6 units against a limit of 5
    clock.advance(60)  # 5 units drained, 1 still owed
    assert backend.acquire_now([Bucket("b|r", 5, 1)]).allowed  # triggers a sweep
    assert len(backend) == 2
    assert not backend.acquire_now([Bucket("a|t", 5, 5)]).allowed
    clock.advance(12)
    assert backend.acquire_now([Bucket("a|t", 5, 5)]).allowed


def test_decision_states_and_never(clock: Clock) -> None:
    backend = MemoryLimiter(clock)
    d = backend.acquire_now([Bucket("a|r", 2, 1), Bucket("a|t", 10, 11)])
    assert not d.allowed
    assert d.states[0].wait_s == 0.0 and d.states[0].remaining == 2  # this one had room
    assert d.states[1].wait_s == NEVER
    assert len(backend) == 0


def test_estimate_tokens_is_the_prompt_count_plus_every_choice_allowance() -> None:
    chat = {"messages": [{"role": "user", "content": TEN_TOKENS}], "max_completion_tokens": 10, "n": 2}
    assert estimate_tokens(chat, "smart") == 10 + 20
    assert estimate_tokens({"prompt": "one two three"}, "smart") == 3
    assert estimate_tokens({"input": ["one two", "three"]}, "smart") == 3
    assert estimate_tokens({"messages": [], "max_tokens": "junk"}, "smart") == 3  # the reply priming alone


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.0201, "21ms"), (1, "1s"), (6.5, "6.5s"), (59.9996, "1m0s"), (60, "1m0s"), (90.25, "1m30.25s")],
)
def test_duration_format_matches_openai(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_build_rate_limiter_without_redis_is_in_memory() -> None:
    hook = build_rate_limiter(parse({}), None)
    assert hook.name == "limits"
    assert isinstance(hook.backend, MemoryLimiter)
