"""Budgets that refuse only what they must (issue 10): a call whose worst case does not fit what is
left is capped (its output limit lowered to what the budget can pay for) instead of refused; only a
call that cannot afford its prompt and a minimum output is refused; the budget is never overshot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fluxway.policy.budget_cap import MIN_CAPPED_OUTPUT
from tests.support.gateway import run_gateway
from tests.support.openai_upstream import spending_allowance
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-cap"
PRICE = {"input_per_mtok": 1000, "output_per_mtok": 1000}  # $0.001 a token
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", spending_allowance(50, prompt=10, cap=50))
        yield up


def _config(up: FakeUpstream, tmp_path: Path) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["k"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini", "price": PRICE}]}],
    }


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str) -> tuple[int, Any, Any]:
    async with http.post(url, json=body, headers={"authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(), r.headers


async def test_calls_are_capped_not_refused_and_the_budget_holds(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(_config(upstream, tmp_path)) as gw, aiohttp.ClientSession() as http:
        status, key, _ = await _post(http, gw.url + "/admin/keys",
                                     {"name": "k", "budget": {"amount_usd": 1.0, "period": "monthly"}}, MASTER)
        assert status == 201
        url = gw.url + "/v1/chat/completions"
        # No max_tokens: the worst case is the model's whole output limit (16,384 tokens, $16).
        status, body, headers = await _post(http, url, {"model": "smart", "messages": HI}, key["key"])
        assert status == 200, body  # was: 429 "this call may cost up to $16..."
        cap = int(headers["x-fluxway-budget-capped"])
        sent = upstream.requests[-1].json()
        assert sent["max_completion_tokens"] == cap and "max_tokens" not in sent
        assert MIN_CAPPED_OUTPUT <= cap < 1000  # what $1 minus the prompt pays for
        # A call that fits is not touched.
        status, body, headers = await _post(http, url, {"model": "smart", "messages": HI, "max_tokens": 5},
                                            key["key"])
        assert status == 200 and "x-fluxway-budget-capped" not in headers
        assert upstream.requests[-1].json()["max_tokens"] == 5

        # 40 concurrent calls at $0.06 each: they go on being capped, then refused; never overshot.
        results = await asyncio.gather(*[
            _post(http, url, {"model": "smart", "messages": HI}, key["key"]) for _ in range(40)
        ])
        statuses = [s for s, _, _ in results]
        assert 200 in statuses and 429 in statuses
        assert {b["error"]["code"] for s, b, _ in results if s != 200} == {"budget_exceeded"}
        # Sequential calls until refused: the last ones are capped at what is left.
        while True:
            status, body, headers = await _post(http, url, {"model": "smart", "messages": HI}, key["key"])
            if status != 200:
                break
        spent = 0.0
        for _ in range(100):
            status, budgets, _ = await _post_get(http, gw.url + "/admin/budgets")
            spent = budgets["data"][0]["spent_usd"]
            await asyncio.sleep(0.05)
            if budgets["data"][0].get("reserved_usd", 0) == 0:
                break
        assert 0.9 < spent <= 1.0 + 1e-9, spent


async def _post_get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, Any]:
    async with http.get(url, headers={"authorization": f"Bearer {MASTER}"}) as r:
        return r.status, await r.json(), r.headers
