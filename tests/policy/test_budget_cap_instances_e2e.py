"""Budgets that refuse only what they must, on 1 and 3 instances (issue 10): waves of 200 concurrent
calls without ``max_tokens``, spread over the instances, against an upstream that uses every output
token it is allowed. Calls are answered in full while the worst case fits, then capped to what is
left, then refused with 429 ``budget_exceeded``; the spend (ledger and usage records) never passes
the budget. Three instances share one PostgreSQL store and one Redis.

``bench/budget_cap.py`` runs the same scenario and writes the figures to ``bench/results``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.store import dbs
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_upstream import spending_allowance
from tests.support.replies import delayed
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-cap-n"
BUDGET_USD = 1.0
MODEL_LIMIT = 4096  # the price table's default output limit: the upstream model below is not in it
PRICE = {"input_per_mtok": 10, "output_per_mtok": 10}  # $0.00001 a token: a whole call costs ~$0.041
PROMPT_TOKENS = 10
HI = [{"role": "user", "content": "Hi"}]


@dataclass
class Figures:
    instances: int
    ledger: str
    calls: int
    answered: int
    capped: int
    refused: int
    spent_usd: float  # the ledger's spend once every call settled
    recorded_usd: float  # the sum of the usage records' costs
    budget_usd: float
    completion_tokens: int  # what the upstream was made to produce, summed from the answers


@asynccontextmanager
async def greedy_upstream() -> AsyncIterator[FakeUpstream]:
    """Answers with every output token the call allows (the model's whole limit when none is set)."""

    async with FakeUpstream() as up:
        greedy = spending_allowance(MODEL_LIMIT, prompt=PROMPT_TOKENS, finish="length")
        up.route("POST", "/v1/chat/completions", delayed(0.01, greedy))
        yield up


def _config(up: FakeUpstream, tmp: Path, i: int, store_url: str, redis_url: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "auth": {"master_key": MASTER},
        "store": {"url": store_url},
        "usage": {"spool_dir": str(tmp / f"spool-{i}"), "flush_interval_ms": 50},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["k"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "mock-llm", "price": PRICE}]}],
    }
    if redis_url is not None:
        cfg["redis"] = {"url": redis_url}
    return cfg


async def _admin(
    http: aiohttp.ClientSession, gw: Gateway, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with http.request(method, gw.url + path, json=body, headers={"authorization": f"Bearer {MASTER}"}) as r:
        return r.status, await r.json()


async def _call(http: aiohttp.ClientSession, gw: Gateway, key: str) -> tuple[int, Any, str | None]:
    async with http.post(
        gw.url + "/v1/chat/completions",
        json={"model": "smart", "messages": HI},
        headers={"authorization": f"Bearer {key}"},
    ) as r:
        return r.status, await r.json(content_type=None), r.headers.get("x-fluxway-budget-capped")


async def run_scenario(
    instances: int, store_url: str, redis_url: str | None, wave: int = 200, max_waves: int = 5
) -> Figures:
    """Waves of ``wave`` concurrent calls, round robin over the instances, until a wave is all refused."""
    assert instances == 1 or redis_url is not None, "instances share a budget only through Redis"
    tmp = Path(tempfile.mkdtemp(prefix="fluxway-cap-"))
    async with greedy_upstream() as up, AsyncExitStack() as stack:
        gws = [
            await stack.enter_async_context(run_gateway(_config(up, tmp, i, store_url, redis_url)))
            for i in range(instances)
        ]
        http = await stack.enter_async_context(aiohttp.ClientSession())
        status, key = await _admin(
            http,
            gws[0],
            "POST",
            "/admin/keys",
            {"name": "capped", "budget": {"amount_usd": BUDGET_USD, "period": "monthly"}},
        )
        assert status == 201, key
        for gw in gws[1:]:  # the others learn of the key from Redis (or their cache's TTL) a moment later
            for _ in range(200):
                async with http.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {key['key']}"}) as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.05)
        answered = capped = refused = calls = tokens = 0
        for _ in range(max_waves):
            results = await asyncio.gather(*(_call(http, gws[i % instances], key["key"]) for i in range(wave)))
            calls += wave
            ok = 0
            for status, body, cap in results:
                if status == 200:
                    ok += 1
                    tokens += body["usage"]["completion_tokens"]
                    if cap is not None:
                        capped += 1
                        assert body["usage"]["completion_tokens"] == int(cap)  # the upstream got the cap
                    else:
                        assert body["usage"]["completion_tokens"] == MODEL_LIMIT
                    continue
                # refused in OpenAI's shape
                assert status == 429, body
                err = body["error"]
                assert err["code"] == "budget_exceeded" and err["type"] and "budget exceeded" in err["message"], body
                assert cap is None
                refused += 1
            answered += ok
            if ok == 0:
                break
        # every instance sees the one shared budget, with nothing left reserved
        spent = []
        for gw in gws:
            for _ in range(200):
                status, budgets = await _admin(http, gw, "GET", "/admin/budgets")
                line = next(b for b in budgets["data"] if b["id"] == key["id"])
                if line["reserved_usd"] == 0:
                    break
                await asyncio.sleep(0.05)
            assert line["reserved_usd"] == 0, line
            spent.append(line["spent_usd"])
        assert len(set(spent)) == 1, spent
        recorded = 0.0
        for gw in gws:  # each instance flushes its own spool when asked; the last answer has them all
            status, usage = await _admin(http, gw, "GET", "/admin/usage?group_by=key")
            recorded = next((u["cost_usd"] for u in usage["data"] if u["key"] == key["id"]), 0.0)
        return Figures(
            instances,
            "redis" if redis_url else "memory",
            calls,
            answered,
            capped,
            refused,
            spent[0],
            recorded,
            BUDGET_USD,
            tokens,
        )


def _check(f: Figures) -> None:
    assert f.spent_usd <= f.budget_usd + 1e-9, asdict(f)  # never overshot
    assert f.recorded_usd <= f.budget_usd + 1e-9, asdict(f)
    assert f.recorded_usd == pytest.approx(f.spent_usd, abs=1e-9)
    assert f.recorded_usd == pytest.approx((f.answered * PROMPT_TOKENS + f.completion_tokens) * 1e-5)
    assert f.answered > 0 and f.capped > 0 and f.refused > 0
    assert f.answered + f.refused == f.calls
    # refused only what it must: what is left would not pay for the prompt and a minimal output
    assert f.spent_usd > f.budget_usd - 0.001, asdict(f)


async def test_one_instance_caps_then_refuses_and_never_overshoots(tmp_path: Path) -> None:
    f = await run_scenario(1, f"sqlite:///{tmp_path}/fluxway.db", None)
    _check(f)


async def test_three_instances_sharing_redis_and_postgres_never_overshoot(
    postgres_url: str, clean_redis_url: str
) -> None:
    store_url = await dbs.fresh_postgres_db(postgres_url)
    try:
        f = await run_scenario(3, store_url, clean_redis_url)
    finally:
        await dbs.drop_postgres_db(postgres_url, store_url)
    _check(f)
