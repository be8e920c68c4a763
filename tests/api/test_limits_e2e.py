"""End to end: rate limits through the gateway, seen by the official SDKs.

The callers' limits are given by a small hook standing in for the key store (it builds the
principal the virtual-key auth hook would), followed by the real :class:`RateLimitHook`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import yaml

from fluxway.policy.hooks import CallContext, Outcome, Principal, ShortCircuit
from fluxway.policy.limits import MemoryLimiter, RateLimitHook
from fluxway.policy.limits_redis import RedisLimiter
from fluxway.redis_client import create_redis
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import completion
from tests.support.ports import free_port
from tests.support.replies import replying
from tests.support.upstream import FakeUpstream

HI = [{"role": "user", "content": "Hi"}]


class FrozenClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class KeyLimits:
    """Stands in for the virtual-key auth hook: api key -> principal with its limits."""

    name = "test-keys"

    def __init__(self, limits: dict[str, list[dict[str, Any]]]) -> None:
        self.limits = limits

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        key = ctx.api_key or ""
        ctx.principal = Principal(id=key, limits=self.limits.get(key, []))
        return None

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        return None


def config(url: str) -> dict[str, Any]:
    return {
        "providers": [{"name": "up", "type": "openai", "base_url": url + "/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
    }


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", replying(completion()))
        yield up


def install(gw: Gateway, limits: dict[str, list[dict[str, Any]]], limiter: RateLimitHook) -> None:
    gw.runtime.pipeline.replace([KeyLimits(limits), limiter])


async def test_rpm_5_gives_five_200_then_429_through_the_openai_sdk(upstream: FakeUpstream) -> None:
    async with run_gateway(config(upstream.url)) as gw:
        install(gw, {"sk-a": [{"scope": "key:a", "rpm": 5, "tpm": None}]}, RateLimitHook(MemoryLimiter()))
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-a", max_retries=0)
        for i in range(5):
            raw = await client.chat.completions.with_raw_response.create(model="smart", messages=HI)
            assert raw.parse().choices[0].message.content == "ok"
            assert raw.headers["x-ratelimit-limit-requests"] == "5"
            assert raw.headers["x-ratelimit-remaining-requests"] == str(4 - i)
            assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="smart", messages=HI)
        err = info.value
        assert err.status_code == 429
        assert err.code == "rate_limit_exceeded"
        assert 11 <= int(err.response.headers["retry-after"]) <= 12
        assert err.response.headers["x-ratelimit-limit-requests"] == "5"
        assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert err.response.headers["x-request-id"]
        # Another key is not affected, and the refused call never reached the upstream.
        other = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-b", max_retries=0)
        raw = await other.chat.completions.with_raw_response.create(model="smart", messages=HI)
        assert "x-ratelimit-limit-requests" not in raw.headers
    assert len(upstream.requests) == 6


async def test_anthropic_shape_gets_its_own_429(upstream: FakeUpstream) -> None:
    async with run_gateway(config(upstream.url)) as gw:
        install(gw, {"sk-a": [{"scope": "key:a", "rpm": 1}]}, RateLimitHook(MemoryLimiter()))
        client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="sk-a", max_retries=0)
        await client.messages.create(model="smart", max_tokens=10, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model="smart", max_tokens=10, messages=HI)
        assert info.value.status_code == 429
        assert info.value.response.headers["retry-after"] == "60"


async def test_tokens_are_reserved_then_settled_to_the_upstream_usage(upstream: FakeUpstream) -> None:
    clock = FrozenClock()
    async with run_gateway(config(upstream.url)) as gw:
        install(gw, {"sk-a": [{"scope": "key:a", "tpm": 100}]}, RateLimitHook(MemoryLimiter(clock)))
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-a", max_retries=0)
        # "Hi": 8 prompt tokens as OpenAI frames it (1 + 3 per message + 1 role + 3 priming) + max_tokens
        # 50 = 58 reserved; the upstream then reports 12.
        raw = await client.chat.completions.with_raw_response.create(model="smart", messages=HI, max_tokens=50)
        assert raw.headers["x-ratelimit-limit-tokens"] == "100"
        assert raw.headers["x-ratelimit-remaining-tokens"] == "42"
        raw = await client.chat.completions.with_raw_response.create(model="smart", messages=HI, max_tokens=50)
        assert raw.headers["x-ratelimit-remaining-tokens"] == "30"  # 100 - 12 - 58
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="smart", messages=HI, max_tokens=80)
        assert "tokens per minute" in info.value.message


async def test_two_gateways_sharing_redis_enforce_one_limit(upstream: FakeUpstream, clean_redis_url: str) -> None:
    limits = {"sk-a": [{"scope": "key:a", "rpm": 20}]}
    r1, r2 = create_redis(clean_redis_url), create_redis(clean_redis_url)
    try:
        async with run_gateway(config(upstream.url)) as g1, run_gateway(config(upstream.url)) as g2:
            install(g1, limits, RateLimitHook(RedisLimiter(r1)))
            install(g2, limits, RateLimitHook(RedisLimiter(r2)))
            clients = [openai.AsyncOpenAI(base_url=g.url + "/v1", api_key="sk-a", max_retries=0) for g in (g1, g2)]

            async def call(i: int) -> int:
                try:
                    await clients[i % 2].chat.completions.create(model="smart", messages=HI)
                except openai.RateLimitError:
                    return 429
                return 200

            statuses = await asyncio.gather(*(call(i) for i in range(50)))
        assert statuses.count(200) == 20
        assert statuses.count(429) == 30
    finally:
        await r1.aclose()
        await r2.aclose()


# ---------------------------------------------------------------------------------------------
# The real thing: virtual keys from the admin API, limits from the key store.

MASTER = "sk-master-limits"


def governed(url: str, tmp: Path, redis_url: str | None = None) -> dict[str, Any]:
    cfg = config(url)
    cfg["auth"] = {"master_key": MASTER}
    cfg["store"] = {"url": f"sqlite:///{tmp}/fluxway.db"}
    if redis_url:
        cfg["redis"] = {"url": redis_url}
    return cfg


async def create_key(base: str, **fields: Any) -> str:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
        s.post(base + "/admin/keys", json={"name": "limited", **fields}) as r,
    ):
        assert r.status == 201, await r.text()
        return str((await r.json())["key"])


async def test_virtual_key_with_rpm_5(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(governed(upstream.url, tmp_path)) as gw:
        key = await create_key(gw.url, rpm=5, tpm=100000)
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        for i in range(5):
            raw = await client.chat.completions.with_raw_response.create(model="smart", messages=HI)
            assert raw.headers["x-ratelimit-remaining-requests"] == str(4 - i)
            assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="smart", messages=HI)
        assert 11 <= int(info.value.response.headers["retry-after"]) <= 12
        assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_team_and_per_model_limits_from_the_admin_api(upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = governed(upstream.url, tmp_path)
    cfg["models"].append({"name": "cheap", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]})
    async with run_gateway(cfg) as gw:
        async with (
            aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
            s.post(gw.url + "/admin/teams", json={"name": "search", "rpm": 3}) as r,
        ):
            assert r.status == 201, await r.text()
        one = await create_key(gw.url, team="search", model_limits={"smart": {"rpm": 1}})
        two = await create_key(gw.url, team="search")
        c1, c2 = (openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=k, max_retries=0) for k in (one, two))
        await c1.chat.completions.create(model="smart", messages=HI)
        with pytest.raises(openai.RateLimitError) as info:  # key one's limit for "smart"
            await c1.chat.completions.create(model="smart", messages=HI)
        assert ":model:smart" in info.value.message
        await c1.chat.completions.create(model="cheap", messages=HI)  # another model: team 2 of 3
        await c2.chat.completions.create(model="smart", messages=HI)  # team 3 of 3
        with pytest.raises(openai.RateLimitError) as info:
            await c2.chat.completions.create(model="cheap", messages=HI)
        assert "team:" in info.value.message
        for c in (c1, c2):
            await c.close()


async def wait_live(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited {proc.returncode}: {log_path.read_text()}")
            try:
                async with s.get(url + "/health/live") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"gateway did not answer within 30 s: {log_path.read_text()}")


@asynccontextmanager
async def serve_processes(cfg: dict[str, Any], tmp: Path, n: int) -> AsyncIterator[list[str]]:
    """``n`` x ``python -m fluxway serve`` in subprocesses, started side by side; yields their base URLs."""
    path = tmp / "fluxway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    procs: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for i in range(n):
            port = free_port()
            log_path = tmp / f"gateway-{i}.log"
            with log_path.open("wb") as log:
                cmd = [sys.executable, "-m", "fluxway", "serve", "--config", str(path), "--port", str(port)]
                proc = subprocess.Popen([*cmd, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
            procs.append((proc, f"http://127.0.0.1:{port}", log_path))
        await asyncio.gather(*(wait_live(url, proc, log_path) for proc, url, log_path in procs))
        yield [url for _, url, _ in procs]
    finally:
        for proc, _, _ in procs:
            proc.terminate()
        for proc, _, _ in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_two_gateway_processes_sharing_redis_enforce_one_limit(
    upstream: FakeUpstream, tmp_path: Path, clean_redis_url: str
) -> None:
    cfg = governed(upstream.url, tmp_path, clean_redis_url)
    async with serve_processes(cfg, tmp_path, 2) as (a, b):
        key = await create_key(a, rpm=5)
        async with aiohttp.ClientSession(headers={"authorization": f"Bearer {key}"}) as s:
            for _ in range(200):  # b learns about the new key (Redis invalidation or its cache TTL)
                async with s.get(b + "/v1/models") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("gateway b never accepted the key created on gateway a")
        clients = [openai.AsyncOpenAI(base_url=u + "/v1", api_key=key, max_retries=0) for u in (a, b)]

        async def call(i: int) -> int:
            try:
                await clients[i % 2].chat.completions.create(model="smart", messages=HI)
            except openai.RateLimitError as err:
                assert err.response.headers["retry-after"]
                return 429
            return 200

        statuses = await asyncio.gather(*(call(i) for i in range(20)))
        assert statuses.count(200) == 5
        assert statuses.count(429) == 15
        # Both processes refuse from now on.
        for c in clients:
            with pytest.raises(openai.RateLimitError):
                await c.chat.completions.create(model="smart", messages=HI)
            await c.close()
