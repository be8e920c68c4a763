"""End to end: a budgeted, rate-limited key while the gateway's Redis is killed and comes back empty.

Reproduces issue 9 #5 (every call of a budgeted key was a 500 during a Redis outage, and 61 more
from stale connections once Redis came back empty) and #7 (a crashed instance's reservations locked
the key for timeout.total + 60 s). Redis here is a private redis-server the test kills and restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from fluxway.policy.budget import Reservation, to_nano
from fluxway.policy.budget_redis import RedisLedger
from fluxway.policy.governance import Governance
from fluxway.policy.keys import BudgetLine
from fluxway.redis_client import create_redis
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import completion
from tests.support.redis_server import private_redis
from tests.support.replies import delayed, replying
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-redis"
HI = [{"role": "user", "content": "Hi"}]
PRICE = {"input_per_mtok": 1000, "output_per_mtok": 1000}  # $0.001 a token: a call costs ~$0.012


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    def wait(_: web.Request, body: bytes) -> float:
        return 2.5 if orjson.loads(body)["messages"][-1]["content"] == "slow" else 0.005

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", delayed(wait, replying(completion())))
        yield up


def config(up: FakeUpstream, tmp_path: Path, redis: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 100},
        "redis": redis,
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini", "price": PRICE}]}],
    }


async def create_key(gw: Gateway, budget_usd: float = 1000.0) -> dict[str, Any]:
    body = {"name": "b", "rpm": 100_000, "tpm": 100_000_000,
            "budget": {"amount_usd": budget_usd, "period": "monthly"}}
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
        s.post(gw.url + "/admin/keys", json=body) as r,
    ):
        assert r.status == 201
        created: dict[str, Any] = await r.json()
        return created


class Caller:
    def __init__(self, gw: Gateway, key: str) -> None:
        self.gw = gw
        self.key = key
        self.session = aiohttp.ClientSession()
        self.seen: Counter[int] = Counter()

    async def chat(self, content: str = "Hi") -> tuple[int, dict[str, str], Any]:
        async with self.session.post(
            self.gw.url + "/v1/chat/completions",
            json={"model": "smart", "messages": [{"role": "user", "content": content}], "max_tokens": 10},
            headers={"authorization": f"Bearer {self.key}"},
        ) as r:
            body = await r.json(content_type=None)
            self.seen[r.status] += 1
            return r.status, {k.lower(): v for k, v in r.headers.items()}, body

    async def messages(self) -> tuple[int, dict[str, str], Any]:
        async with self.session.post(
            self.gw.url + "/v1/messages",
            json={"model": "smart", "max_tokens": 10, "messages": HI},
            headers={"x-api-key": self.key, "anthropic-version": "2023-06-01"},
        ) as r:
            body = await r.json(content_type=None)
            self.seen[r.status] += 1
            return r.status, {k.lower(): v for k, v in r.headers.items()}, body

    async def wave(self, n: int) -> list[int]:
        return [s for s, _, _ in await asyncio.gather(*(self.chat() for _ in range(n)))]

    async def metrics(self) -> dict[str, float]:
        async with self.session.get(self.gw.url + "/metrics") as r:
            text = await r.text()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("fluxway_redis"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    async def until_redis_up(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while (await self.metrics())["fluxway_redis_up"] != 1:
            assert time.monotonic() < deadline, "the gateway did not see Redis come back"
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.session.close()


def governance(gw: Gateway) -> Governance:
    gov = gw.runtime.governance
    assert isinstance(gov, Governance)
    return gov


async def test_open_serves_a_budgeted_key_through_an_outage_and_an_empty_restart(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    with private_redis() as server:
        async with run_gateway(config(upstream, tmp_path, {"url": server.url, "on_failure": "open"})) as gw:
            key = await create_key(gw)
            c = Caller(gw, key["key"])
            try:
                assert await c.wave(20) == [200] * 20
                m = await c.metrics()
                assert m["fluxway_redis_up"] == 1 and m["fluxway_redis_outages_total"] == 0

                server.kill()
                during = await c.wave(100) + await c.wave(100)
                assert during == [200] * 200  # was: a 500 and a traceback each
                m = await c.metrics()
                assert m["fluxway_redis_up"] == 0 and m["fluxway_redis_outages_total"] == 1
                assert m['fluxway_redis_fallback_total{hook="budget"}'] >= 199
                assert m['fluxway_redis_fallback_total{hook="limits"}'] >= 199
                async with c.session.get(gw.url + "/admin/budgets", headers={"authorization": f"Bearer {MASTER}"}) as r:
                    assert r.status == 200  # read from the local ledger meanwhile
                    assert (await r.json())["data"][0]["spent_usd"] > 0
                async with c.session.get(gw.url + "/health/ready") as r:  # degraded, still in rotation
                    ready = await r.json()
                    assert r.status == 200 and ready["status"] == "degraded" and ready["degraded"] == ["redis"]

                server.start()  # back, empty: no scripts, no buckets
                await c.until_redis_up()
                after = await c.wave(100)
                assert after == [200] * 100
                assert set(c.seen) == {200}
                # Redis is used again: the budget bucket was rebuilt there from the store's spend
                client = create_redis(server.url)
                try:
                    assert [k async for k in client.scan_iter("fw:budget:*")]
                    assert [k async for k in client.scan_iter("fluxway:rl:*")]
                finally:
                    await client.aclose()
                await asyncio.sleep(0.2)
                line = BudgetLine(f"key:{key['id']}", 1000.0, "monthly")
                spent, reserved = await governance(gw).budget.ledger.state(line, time.time())
                assert reserved == 0 and spent > 0
            finally:
                await c.close()


async def test_closed_answers_503_redis_unavailable_in_the_callers_shape(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    with private_redis() as server:
        async with run_gateway(config(upstream, tmp_path, {"url": server.url, "on_failure": "closed"})) as gw:
            key = await create_key(gw)
            c = Caller(gw, key["key"])
            try:
                assert await c.wave(10) == [200] * 10
                server.kill()
                results = await asyncio.gather(*(c.chat() for _ in range(100)))
                assert [s for s, _, _ in results] == [503] * 100
                for _, headers, body in results:
                    assert int(headers["retry-after"]) >= 1
                    assert body["error"]["code"] == "redis_unavailable"
                    assert body["error"]["type"] == "server_error"
                status, headers, body = await c.messages()  # the Anthropic shape gets its own
                assert status == 503 and int(headers["retry-after"]) >= 1
                assert body["type"] == "error" and "Redis" in body["error"]["message"]
                m = await c.metrics()
                assert m["fluxway_redis_up"] == 0 and m["fluxway_redis_refused_total"] >= 101

                server.start()
                await c.until_redis_up()
                assert await c.wave(100) == [200] * 100
                assert 500 not in c.seen
            finally:
                await c.close()


async def test_a_quick_empty_restart_gives_no_errors_from_stale_connections(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    # closed: any Redis error the gateway cannot absorb would show as a 503, so only 200s prove the
    # stale pooled connections were replaced and the scripts reloaded (NOSCRIPT) transparently.
    with private_redis() as server:
        async with run_gateway(config(upstream, tmp_path, {"url": server.url, "on_failure": "closed"})) as gw:
            key = await create_key(gw)
            c = Caller(gw, key["key"])
            try:
                assert await c.wave(64) == [200] * 64  # many pooled connections in use
                for _ in range(3):
                    server.restart_empty()
                    assert await c.wave(64) == [200] * 64
                assert (await c.metrics())["fluxway_redis_outages_total"] == 0
            finally:
                await c.close()


async def test_a_crashed_instances_reservation_is_reclaimed_after_its_lease(
    upstream: FakeUpstream, tmp_path: Path, clean_redis_url: str
) -> None:
    cfg = config(upstream, tmp_path, {"url": clean_redis_url, "lease_s": 1})
    async with run_gateway(cfg) as gw:
        key = await create_key(gw, budget_usd=1.0)
        c = Caller(gw, key["key"])
        line = BudgetLine(f"key:{key['id']}", 1.0, "monthly")
        other = create_redis(clean_redis_url)
        try:
            # Another instance reserves most of the budget and dies: it never settles, never renews.
            async def no_spend(scope: str, since: float | None) -> float:
                return 0.0

            crashed = RedisLedger(other, no_spend, lease_seconds=1.0)
            assert isinstance(await crashed.reserve([line], to_nano(0.99), time.time()), Reservation)
            await crashed.close()
            status, _, body = await c.chat()
            assert status == 429 and body["error"]["code"] == "budget_exceeded"
            await asyncio.sleep(1.2)  # was: timeout.total + 60 s (11 minutes with default timeouts)
            status, _, _ = await c.chat()
            assert status == 200

            # A call running longer than the lease keeps its hold: the heartbeat renews it.
            slow = asyncio.create_task(c.chat("slow"))
            await asyncio.sleep(2.0)
            _, reserved = await governance(gw).budget.ledger.state(line, time.time())
            assert reserved > 0
            assert (await slow)[0] == 200
            await asyncio.sleep(0.2)
            _, reserved = await governance(gw).budget.ledger.state(line, time.time())
            assert reserved == 0
        finally:
            await c.close()
            await other.aclose()
