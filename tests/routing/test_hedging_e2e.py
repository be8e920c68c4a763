"""Hedged requests end to end: a slow first target is raced by the next one (issue 4).

Assertions are on what the seams see (which upstream answered, which connection was dropped, the
metrics counters), never on how fast anything was, beyond generous guards against hangs.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.faults import FaultyUpstream
from tests.support.gateway import Gateway, run_gateway
from tests.support.pair import pair_config

HI: list[Any] = [{"role": "user", "content": "Hi"}]


def _client(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


async def _metrics(gw: Gateway) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    out: dict[str, float] = {}
    for m in re.finditer(r"^(fluxway_[a-z_]+) ([0-9.e+-]+)$", text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


async def _ask(client: openai.AsyncOpenAI, stream: bool) -> tuple[Any, str]:
    raw: Any = await client.chat.completions.with_raw_response.create(model="m", messages=HI, stream=stream)
    if stream:
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    else:
        text = raw.parse().choices[0].message.content or ""
    return raw, text


def _hedged(a: FaultyUpstream, b: FaultyUpstream, after_ms: float | None = 50, **model: Any) -> dict[str, Any]:
    hedge: dict[str, Any] = {} if after_ms is None else {"after_ms": after_ms}
    return pair_config(a, b, model={"hedge": hedge, **model}, timeout={"first_token": 5, "total": 10})


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_slow_first_target_is_hedged_and_the_loser_cancelled(stream: bool) -> None:
    async with (
        FaultyUpstream("a", "slow", slow_s=1.0) as a,
        FaultyUpstream("b") as b,
        run_gateway(_hedged(a, b)) as gw,
    ):
        client = _client(gw)
        async with asyncio.timeout(0.9):  # generous: A alone would take 1 s
            raw, text = await _ask(client, stream)
        assert text == "Hello from b"
        assert raw.headers["x-fluxway-provider"] == "b"
        assert raw.headers["x-fluxway-attempts"] == "2"
        async with asyncio.timeout(2):
            await a.disconnected.wait()  # the losing request to A was cancelled
        metrics = await _metrics(gw)
    assert (a.count, b.count) == (1, 1)
    assert a.disconnects == 1
    assert b.disconnects == 0
    assert metrics["fluxway_hedges_total"] == 1
    assert metrics["fluxway_hedge_wins_total"] == 1
    # The hedge is the same request.
    sent_a, sent_b = a.requests[0].json(), b.requests[0].json()
    assert sent_a["messages"] == sent_b["messages"] == HI


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_fast_first_target_is_not_hedged(stream: bool) -> None:
    async with FaultyUpstream("a") as a, FaultyUpstream("b") as b, run_gateway(_hedged(a, b, after_ms=2000)) as gw:
        client = _client(gw)
        for _ in range(5):
            raw, text = await _ask(client, stream)
            assert text == "Hello from a"
            assert raw.headers["x-fluxway-provider"] == "a"
            assert raw.headers["x-fluxway-attempts"] == "1"
        metrics = await _metrics(gw)
    assert (a.count, b.count) == (5, 0)
    assert metrics["fluxway_hedges_total"] == 0


async def test_failed_hedge_leaves_the_slow_first_target_to_answer() -> None:
    async with (
        FaultyUpstream("a", "slow", slow_s=0.3) as a,
        FaultyUpstream("b", "500") as b,
        run_gateway(_hedged(a, b, retry={"attempts": 1})) as gw,
    ):
        client = _client(gw)
        raw, text = await _ask(client, stream=False)
        metrics = await _metrics(gw)
    assert text == "Hello from a"
    assert raw.headers["x-fluxway-provider"] == "a"
    assert (a.count, b.count) == (1, 1)
    assert a.disconnects == 0
    assert metrics["fluxway_hedges_total"] == 1
    assert metrics["fluxway_hedge_wins_total"] == 0


async def test_first_target_failing_fast_is_not_a_hedge() -> None:
    async with (
        FaultyUpstream("a", "500") as a,
        FaultyUpstream("b") as b,
        run_gateway(_hedged(a, b, after_ms=1000, retry={"attempts": 1})) as gw,
    ):
        client = _client(gw)
        async with asyncio.timeout(0.9):  # B is tried as soon as A fails, not after the hedge delay
            raw, text = await _ask(client, stream=False)
        metrics = await _metrics(gw)
    assert text == "Hello from b"
    assert raw.headers["x-fluxway-provider"] == "b"
    assert (a.count, b.count) == (1, 1)
    assert metrics["fluxway_hedges_total"] == 0


async def test_hedge_delay_defaults_to_the_observed_p95() -> None:
    async with (
        FaultyUpstream("a") as a,
        FaultyUpstream("b") as b,
        run_gateway(_hedged(a, b, after_ms=None)) as gw,
    ):
        client = _client(gw)
        for _ in range(12):  # A's time to first byte becomes known (p95 needs 10 samples)
            raw, _ = await _ask(client, stream=False)
            assert raw.headers["x-fluxway-provider"] == "a"
        assert (await _metrics(gw))["fluxway_hedges_total"] == 0
        await a.set_mode("slow")
        async with asyncio.timeout(0.9):
            raw, text = await _ask(client, stream=True)
        assert text == "Hello from b"
        assert raw.headers["x-fluxway-provider"] == "b"
        async with asyncio.timeout(2):
            await a.disconnected.wait()
        assert (await _metrics(gw))["fluxway_hedges_total"] == 1
    assert b.count == 1


async def test_hedging_under_load_has_no_errors() -> None:
    async with (
        FaultyUpstream("a", "slow", slow_s=5.0, every=5) as a,  # one request in five is very slow
        FaultyUpstream("b") as b,
        run_gateway(_hedged(a, b, after_ms=100)) as gw,
    ):
        client = _client(gw)
        sem = asyncio.Semaphore(16)
        providers: list[str] = []

        async def one() -> None:
            async with sem:
                raw, text = await _ask(client, stream=False)
                assert text == f"Hello from {raw.headers['x-fluxway-provider']}"
                providers.append(raw.headers["x-fluxway-provider"])

        async with asyncio.timeout(4):  # no client waited for a slow answer of A
            await asyncio.gather(*(one() for _ in range(100)))
        async with asyncio.timeout(2):
            while a.disconnects < 20:
                await asyncio.sleep(0.01)
        metrics = await _metrics(gw)
    assert a.outcomes == {"ok": 80, "slow": 20}
    assert len(providers) == 100
    # Every slow request of A was hedged, lost to B and cancelled (a busy machine may hedge more).
    assert providers.count("b") >= 20
    assert metrics["fluxway_hedges_total"] >= 20
    assert metrics["fluxway_hedge_wins_total"] == providers.count("b")
    assert b.count >= 20
