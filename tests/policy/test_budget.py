from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from fluxway.canonical import CanonicalRequest, Endpoint, Target, Usage
from fluxway.config import parse
from fluxway.errors import GatewayError
from fluxway.policy.budget import (
    NANO,
    RESERVATION,
    BudgetHook,
    Ledger,
    MemoryLedger,
    Refusal,
    Reservation,
    period_window,
    to_nano,
    worst_case_tokens,
)
from fluxway.policy.budget_redis import RedisLedger
from fluxway.policy.hooks import CallContext, Outcome, Principal
from fluxway.policy.keys import BudgetLine
from fluxway.policy.pricing import Pricer
from fluxway.redis_client import create_redis


def ts(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()


def test_period_windows() -> None:
    now = ts("2025-03-31T23:59:59")
    d = period_window("daily", now)
    assert d.key == "d:2025-03-31" and d.start == ts("2025-03-31T00:00:00") and d.end == ts("2025-04-01T00:00:00")
    m = period_window("monthly", now)
    assert m.key == "m:2025-03" and m.start == ts("2025-03-01T00:00:00") and m.end == ts("2025-04-01T00:00:00")
    dec = period_window("monthly", ts("2025-12-15T10:00:00"))
    assert dec.end == ts("2026-01-01T00:00:00")
    t = period_window("total", now)
    assert (t.key, t.start, t.end) == ("total", None, None)


class Loader:
    """Stands in for the store: spend per scope, with a delay like a database round trip."""

    def __init__(self, spent: dict[str, float] | None = None, delay: float = 0.005) -> None:
        self.spent = spent or {}
        self.delay = delay
        self.calls: list[tuple[str, float | None]] = []

    async def __call__(self, scope: str, since: float | None) -> float:
        self.calls.append((scope, since))
        await asyncio.sleep(self.delay)
        return self.spent.get(scope, 0.0)


@pytest.fixture(params=["memory", "redis"])
async def make_ledger(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[Loader], Ledger]]:
    clients: list[Redis] = []

    def make(loader: Loader) -> Ledger:
        if request.param == "memory":
            return MemoryLedger(loader)
        url = request.getfixturevalue("clean_redis_url")
        client = create_redis(url)
        clients.append(client)
        return RedisLedger(client, loader)

    yield make
    for c in clients:
        await c.aclose()


NOW = ts("2025-06-15T12:00:00")


async def test_reserve_refuses_what_does_not_fit_and_settles(make_ledger: Callable[[Loader], Ledger]) -> None:
    ledger = make_ledger(Loader({"key:k": 0.75}))
    line = BudgetLine("key:k", 1.0, "monthly")
    r1 = await ledger.reserve([line], to_nano(0.2), NOW)
    assert isinstance(r1, Reservation)
    assert await ledger.state(line, NOW) == (to_nano(0.75), to_nano(0.2))
    r2 = await ledger.reserve([line], to_nano(0.1), NOW)
    assert isinstance(r2, Refusal)
    assert r2.retry_after == 1.0  # fits once the call in flight settles
    ledger.settle(r1, to_nano(0.05))
    await ledger.drain()
    assert await ledger.state(line, NOW) == (to_nano(0.8), 0)
    r3 = await ledger.reserve([line], to_nano(0.3), NOW)
    assert isinstance(r3, Refusal)
    assert r3.retry_after == pytest.approx(ts("2025-07-01T00:00:00") - NOW)  # only the next period helps
    err = r3.error()
    assert err.status == 429 and err.code == "budget_exceeded" and "key:k" in err.message
    assert int(err.headers["retry-after"]) >= 1


async def test_every_line_must_fit_and_all_are_charged(make_ledger: Callable[[Loader], Ledger]) -> None:
    ledger = make_ledger(Loader({"team:t": 9.5}))
    key, team = BudgetLine("key:k", 5.0, "daily"), BudgetLine("team:t", 10.0, "total")
    refused = await ledger.reserve([key, team], to_nano(0.6), NOW)
    assert isinstance(refused, Refusal) and refused.line == team
    assert await ledger.state(key, NOW) == (0, 0)  # nothing held on the line that did fit
    ok = await ledger.reserve([key, team], to_nano(0.4), NOW)
    assert isinstance(ok, Reservation)
    ledger.settle(ok, to_nano(0.25))
    await ledger.drain()
    assert (await ledger.state(key, NOW))[0] == to_nano(0.25)
    assert (await ledger.state(team, NOW))[0] == to_nano(9.75)


async def test_spend_starts_from_the_store_per_period(make_ledger: Callable[[Loader], Ledger]) -> None:
    loader = Loader({"key:k": 0.5})
    ledger = make_ledger(loader)
    line = BudgetLine("key:k", 1.0, "daily")
    assert await ledger.state(line, NOW) == (to_nano(0.5), 0)
    assert loader.calls == [("key:k", ts("2025-06-15T00:00:00"))]
    # the next day is a new bucket, loaded from the store from that day's start
    loader.spent["key:k"] = 0.0
    tomorrow = NOW + 86400
    assert isinstance(await ledger.reserve([line], to_nano(0.9), tomorrow), Reservation)
    assert loader.calls[-1] == ("key:k", ts("2025-06-16T00:00:00"))


async def test_never_overshoots_under_200_concurrent_calls(make_ledger: Callable[[Loader], Ledger]) -> None:
    spent0 = 0.97
    ledger = make_ledger(Loader({"key:k": spent0, "team:t": 0.0}))
    lines = [BudgetLine("key:k", 1.0, "monthly"), BudgetLine("team:t", 50.0, "monthly")]
    worst = to_nano(0.001)
    rng = random.Random(7)

    async def call() -> bool:
        res = await ledger.reserve(lines, worst, NOW)
        if isinstance(res, Refusal):
            return False
        await asyncio.sleep(rng.random() * 0.01)
        ledger.settle(res, worst - rng.randrange(0, worst // 2))  # the real cost is at most the worst case
        return True

    results = await asyncio.gather(*(call() for _ in range(200)))
    await ledger.drain()
    spent, reserved = await ledger.state(lines[0], NOW)
    assert reserved == 0
    assert spent <= to_nano(1.0)
    assert sum(results) >= 30  # 0.03 of room at <= 0.001 a call: at least 30 fit
    assert sum(results) < 200


async def test_redis_ledger_is_shared_and_reservations_expire(clean_redis_url: str) -> None:
    a_client, b_client = create_redis(clean_redis_url), create_redis(clean_redis_url)
    try:
        loader = Loader()
        a = RedisLedger(a_client, loader, lease_seconds=30)
        b = RedisLedger(b_client, loader, lease_seconds=30)
        line = BudgetLine("team:x", 1.0, "total")
        held = await a.reserve([line], to_nano(0.6), NOW)
        assert isinstance(held, Reservation)
        assert isinstance(await b.reserve([line], to_nano(0.6), NOW), Refusal)  # instance b sees a's hold
        # a dies without settling: after the hold deadline the reservation no longer counts
        assert isinstance(await b.reserve([line], to_nano(0.6), NOW + 31), Reservation)
        a.settle(held, to_nano(0.1))  # a late settle still charges what was spent, and releases nothing twice
        await a.drain()
        spent, reserved = await b.state(line, NOW + 31)
        assert spent == to_nano(0.1) and reserved == to_nano(0.6)
    finally:
        await a_client.aclose()
        await b_client.aclose()


def _cfg() -> object:
    return parse(
        {
            "providers": [{"name": "oai", "type": "openai", "api_keys": ["k"]}],
            "models": [{"name": "smart", "targets": [{"provider": "oai", "model": "gpt-4o"}]}],
        }
    )


def _ctx(body: dict[str, object], principal: Principal | None, endpoint: Endpoint = Endpoint.CHAT) -> CallContext:
    req = CanonicalRequest(endpoint, str(body.get("model", "smart")), body)
    return CallContext("r", "openai", {}, None, req, principal=principal)


def test_worst_case_tokens() -> None:
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 10)  # 100 tokens in o200k_base
    body: dict[str, object] = {"model": "smart", "messages": [{"role": "user", "content": text}], "max_tokens": 50}
    u = worst_case_tokens(_ctx(body, None), 4096)
    # An alias of unknown family: its o200k count (100 + 3 + 1 for the role + 3 priming) plus 25 %.
    assert (u.prompt_tokens, u.completion_tokens) == (math.ceil(107 * 1.25), 50)
    exact = worst_case_tokens(_ctx({**body, "model": "gpt-4o"}, None), 4096)
    assert exact.prompt_tokens == 107  # an OpenAI model: counted exactly, no margin
    body2 = {**body, "max_completion_tokens": 70, "n": 3}
    body2.pop("max_tokens")
    assert worst_case_tokens(_ctx(body2, None), 4096).completion_tokens == 210
    assert worst_case_tokens(_ctx({"model": "smart", "messages": []}, None), 1234).completion_tokens == 1234
    emb = worst_case_tokens(_ctx({"model": "e", "input": "hello"}, None, Endpoint.EMBEDDINGS), 4096)
    assert emb.completion_tokens == 0


async def test_hook_reserves_refuses_and_settles_to_actual_cost() -> None:
    pricer = Pricer(_cfg())  # type: ignore[arg-type]
    ledger = MemoryLedger(Loader())
    hook = BudgetHook(ledger, pricer, clock=lambda: NOW)
    line = BudgetLine("key:k", 0.01, "daily")
    p = Principal(id="k", budgets=(line,))
    body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}

    ctx = _ctx(body, p)
    await hook.pre(ctx)
    worst = hook.worst_case(ctx)
    assert worst == pytest.approx(((len(str(body)) // 4) * 2.5 + 100 * 10.0) / 1e6 * NANO, rel=0.2)
    assert await ledger.state(line, NOW) == (0, worst)
    await hook.post(ctx, Outcome(200, Target("oai", "gpt-4o"), 1, Usage(prompt_tokens=10, completion_tokens=20)))
    actual = to_nano((10 * 2.5 + 20 * 10.0) / 1e6)
    assert await ledger.state(line, NOW) == (actual, 0)

    # a failed call releases its reservation and costs nothing
    ctx = _ctx(body, p)
    await hook.pre(ctx)
    await hook.post(ctx, Outcome(502))
    assert await ledger.state(line, NOW) == (actual, 0)

    # a call too big for what is left is capped to what the budget can pay for ...
    big = _ctx({**body, "max_tokens": 10_000}, p)
    await hook.pre(big)
    cap = big.request.body["max_tokens"]
    assert 16 <= cap < 1000 and big.response_headers["x-fluxway-budget-capped"] == str(cap)
    spent, reserved = await ledger.state(line, NOW)
    assert spent + reserved <= to_nano(0.01)
    # ... and one that cannot afford even its prompt and a minimum output is refused before it goes anywhere
    broke = _ctx({**body, "max_tokens": 10_000}, p)
    with pytest.raises(GatewayError) as ei:
        await hook.pre(broke)
    assert ei.value.status == 429 and ei.value.code == "budget_exceeded"
    assert broke.get(RESERVATION) is None
    await hook.post(big, Outcome(502))

    # principals without budgets are not touched
    free = _ctx(body, Principal(id="x"))
    assert await hook.pre(free) is None and free.get(RESERVATION) is None


async def test_leases_are_renewed_while_held_and_reclaimed_once_the_holder_is_gone(clean_redis_url: str) -> None:
    a_client, b_client = create_redis(clean_redis_url), create_redis(clean_redis_url)
    try:
        loader = Loader()
        a = RedisLedger(a_client, loader, lease_seconds=1.0)
        b = RedisLedger(b_client, loader, lease_seconds=1.0)
        line = BudgetLine("team:lease", 1.0, "total")
        held = await a.reserve([line], to_nano(0.6), time.time())
        assert isinstance(held, Reservation)
        await asyncio.sleep(2.0)  # twice the lease: a's heartbeat kept it
        assert isinstance(await b.reserve([line], to_nano(0.6), time.time()), Refusal)
        await a.close()  # a "crashes": no more heartbeats, no settle
        await asyncio.sleep(1.1)
        assert isinstance(await b.reserve([line], to_nano(0.6), time.time()), Reservation)
    finally:
        await a_client.aclose()
        await b_client.aclose()


async def test_a_reservation_never_settled_is_renewed_only_up_to_the_longest_call(clean_redis_url: str) -> None:
    client = create_redis(clean_redis_url)
    try:
        ledger = RedisLedger(client, Loader(), lease_seconds=1.0, max_hold_seconds=1.0)
        line = BudgetLine("team:leak", 1.0, "total")
        assert isinstance(await ledger.reserve([line], to_nano(0.6), time.time()), Reservation)
        await asyncio.sleep(2.6)  # the heartbeat runs, but stops renewing once the hold is older than 1 s
        assert isinstance(await ledger.reserve([line], to_nano(0.6), time.time()), Reservation)
        await ledger.close()
    finally:
        await client.aclose()
