"""Routing strategies end to end (issue 4): requests counted where they land, at the upstreams."""

from __future__ import annotations

import asyncio
from typing import Any

import openai

from tests.support.faults import FaultyUpstream
from tests.support.gateway import Gateway, run_gateway
from tests.support.load import run_raw_load
from tests.support.pair import MODEL_A, MODEL_B, pair_config

HI: list[Any] = [{"role": "user", "content": "Hi"}]


def _client(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


async def _provider(client: openai.AsyncOpenAI) -> str:
    raw = await client.chat.completions.with_raw_response.create(model="m", messages=HI)
    assert raw.parse().choices[0].message.content == f"Hello from {raw.headers['x-fluxway-provider']}"
    return raw.headers["x-fluxway-provider"]


def _targets(wa: float = 1, wb: float = 1, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"provider": "a", "model": MODEL_A, "weight": wa, **extra.get("a", {})},
        {"provider": "b", "model": MODEL_B, "weight": wb, **extra.get("b", {})},
    ]


async def test_weighted_split_over_1000_requests() -> None:
    async with FaultyUpstream("a") as a, FaultyUpstream("b") as b:
        cfg = pair_config(a, b, model={"strategy": "weighted", "targets": _targets(3, 1)})
        async with run_gateway(cfg) as gw, asyncio.timeout(60):
            load = await run_raw_load(gw.url, 1000, concurrency=32)
    assert load.errors == []
    assert a.count + b.count == 1000
    assert abs(a.count - 750) <= 40
    assert load.providers == {"a": a.count, "b": b.count}
    assert load.texts == {"Hello from a": a.count, "Hello from b": b.count}


async def test_weighted_split_is_exact_over_a_sequential_cycle() -> None:
    async with FaultyUpstream("a") as a, FaultyUpstream("b") as b:
        cfg = pair_config(a, b, model={"strategy": "weighted", "targets": _targets(3, 1)})
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            order = [await _provider(client) for _ in range(8)]
    # Smooth weighted round-robin: every 4 picks hold A three times, B once, spread out.
    assert order.count("a") == 6 and order.count("b") == 2
    assert order[:4].count("b") == 1 and order[4:].count("b") == 1


async def test_weight_zero_is_a_standby_used_only_when_the_others_fail() -> None:
    async with FaultyUpstream("a") as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"strategy": "weighted", "targets": _targets(1, 0), "retry": {"attempts": 1}},
            routing={"breaker": {"failure_threshold": 2, "open_cooldown_s": 60}},
        )
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            assert {await _provider(client) for _ in range(20)} == {"a"}
            await a.set_mode("503")
            assert {await _provider(client) for _ in range(10)} == {"b"}
    assert a.count == 22  # 20 answers, then 2 failures open its breaker
    assert b.count == 10


async def test_fallback_always_hits_the_first_healthy_target() -> None:
    async with FaultyUpstream("a") as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"strategy": "fallback", "targets": _targets(1, 5), "retry": {"attempts": 1}},
            routing={"breaker": {"failure_threshold": 2, "open_cooldown_s": 0.5}},
        )
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            assert [await _provider(client) for _ in range(20)] == ["a"] * 20  # weights do not matter
            await a.set_mode("refused")
            assert [await _provider(client) for _ in range(10)] == ["b"] * 10
            await a.set_mode("ok")
            async with asyncio.timeout(5):  # once its breaker lets a probe through, A is first again
                while await _provider(client) != "a":
                    await asyncio.sleep(0.05)
            assert [await _provider(client) for _ in range(5)] == ["a"] * 5


async def test_least_busy_avoids_the_target_with_a_request_in_flight() -> None:
    # A stays busy for 3 s: long enough that the 9 calls below finish first even on a loaded machine.
    async with FaultyUpstream("a", "slow", slow_s=3.0) as a, FaultyUpstream("b") as b:
        model = {"strategy": "least-busy", "targets": _targets(1, 1)}
        cfg = pair_config(a, b, model=model, timeout={"first_token": 10, "total": 20})
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            held = asyncio.ensure_future(_provider(client))  # tie: A first, and it stays busy
            async with asyncio.timeout(2):
                while a.count == 0:
                    await asyncio.sleep(0.005)
            assert [await _provider(client) for _ in range(9)] == ["b"] * 9
            assert await held == "a"
            # Nothing in flight any more: ties are shared again.
            assert {await _provider(client) for _ in range(4)} == {"a", "b"}


async def test_latency_prefers_the_faster_target_once_learned() -> None:
    async with FaultyUpstream("a", "500", delay=0.1) as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"strategy": "latency", "targets": _targets(1, 1), "retry": {"attempts": 1}},
            routing={"explore": 0},
            timeout={"first_token": 5},
        )
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            # Nothing known: config order; A fails, so B answers and B's latency is learned.
            assert await _provider(client) == "b"
            assert a.count == 1
            # B (measured) now comes first; make it fail once so that slow A is measured too.
            await a.set_mode("ok")
            await b.set_mode("500")
            assert await _provider(client) == "a"
            await b.set_mode("ok")
            b.reset_counts()
            a.reset_counts()
            order = [await _provider(client) for _ in range(30)]
    assert order == ["b"] * 30
    assert a.count == 0


async def test_latency_explores_untried_targets() -> None:
    async with FaultyUpstream("a") as a, FaultyUpstream("b") as b:
        cfg = pair_config(a, b, model={"strategy": "latency", "targets": _targets(1, 1)}, routing={"explore": 1.0})
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            seen = {await _provider(client) for _ in range(30)}
    assert seen == {"a", "b"}  # B, never first in config order, is explored


async def test_cost_picks_the_cheapest_priced_target_first() -> None:
    async with FaultyUpstream("a") as a, FaultyUpstream("b") as b:
        prices = {
            "a": {"price": {"input_per_mtok": 5.0, "output_per_mtok": 15.0}},
            "b": {"price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}},
        }
        cfg = pair_config(
            a,
            b,
            model={"strategy": "cost", "targets": _targets(1, 1, **prices), "retry": {"attempts": 1}},
            routing={"breaker": {"failure_threshold": 3, "open_cooldown_s": 60}},
        )
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            assert {await _provider(client) for _ in range(20)} == {"b"}
            await b.set_mode("500")
            assert {await _provider(client) for _ in range(5)} == {"a"}  # the dearer one when needed
    assert a.count == 5


async def test_cost_uses_the_shipped_price_table() -> None:
    async with FaultyUpstream("a") as a, FaultyUpstream("b") as b:
        targets = [{"provider": "a", "model": "gpt-4o"}, {"provider": "b", "model": "gpt-4o-mini"}]
        cfg = pair_config(a, b, model={"strategy": "cost", "targets": targets})
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            assert {await _provider(client) for _ in range(10)} == {"b"}
    assert a.count == 0
