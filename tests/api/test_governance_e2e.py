"""End to end: virtual keys, budgets and usage records through the real gateway and the openai SDK."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml
from aiohttp import web

from fluxway.policy.budget import NANO, period_window
from fluxway.policy.governance import Governance
from fluxway.policy.keys import BudgetLine
from fluxway.store import Store
from tests.store import dbs
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import chunk, completion, openai_sse, usage, usage_chunk
from tests.support.ports import free_port
from tests.support.replies import delayed, replying, sse_reply
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-e2e"
HI = [{"role": "user", "content": "Hi"}]

PRICE = {"input_per_mtok": 1000, "output_per_mtok": 1000}

db_url = dbs.db_url


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    def wait(request: web.Request, _: bytes) -> float:
        return float(request.headers.get("x-test-delay", "0.02"))

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", delayed(wait, replying(completion())))
        yield up


def config(up: FakeUpstream, tmp_path: Path, store_url: str | None = None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "auth": {"master_key": MASTER},
        "store": {"url": store_url or f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 100},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [
            {
                "name": "smart",
                # $1 per thousand tokens: a call's cost is large enough to see
                "targets": [{"provider": "up", "model": "gpt-4o-mini", "price": PRICE}],
            },
            {"name": "cheap", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]},
        ],
    }
    cfg.update(extra)
    return cfg


async def admin(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
        s.request(method, base + path, json=body) as r,
    ):
        return r.status, await r.json()


def governance(gw: Gateway) -> Governance:
    gov = gw.runtime.governance
    assert isinstance(gov, Governance)
    return gov


async def test_key_lifecycle_and_model_permissions(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(config(upstream, tmp_path)) as gw:
        status, team = await admin(gw.url, "POST", "/admin/teams", {"name": "search", "models": ["smart", "cheap"]})
        assert status == 201, team
        status, created = await admin(
            gw.url, "POST", "/admin/keys", {"name": "ci-bot", "team": "search", "models": ["smart"], "rpm": 60}
        )
        assert status == 201, created
        secret = created["key"]
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)

        resp = await client.chat.completions.create(model="smart", messages=HI)  # type: ignore[arg-type]
        assert resp.choices[0].message.content == "ok"
        models = [m.id for m in (await client.models.list()).data]
        assert models == ["smart"]

        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.chat.completions.create(model="cheap", messages=HI)  # type: ignore[arg-type]
        assert denied.value.status_code == 403 and "cheap" in denied.value.message
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="up/gpt-4o", messages=HI)  # type: ignore[arg-type]

        status, listed = await admin(gw.url, "GET", "/admin/keys")
        assert [(k["id"], k["prefix"]) for k in listed["data"]] == [(created["id"], secret[:14])]

        for wrong in ["sk-fw-unknown", "nothing"]:  # a key is required once the master key is set
            async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=wrong, max_retries=0) as bad:
                with pytest.raises(openai.AuthenticationError):
                    await bad.models.list()
        async with (
            aiohttp.ClientSession(headers={"authorization": f"Bearer {secret}"}) as s,
            s.get(gw.url + "/admin/keys") as r,
        ):
            assert r.status == 403  # a user key is no admin

        status, revoked = await admin(gw.url, "DELETE", f"/admin/keys/{created['id']}")
        assert status == 200 and revoked["revoked"] is True
        with pytest.raises(openai.AuthenticationError) as gone:
            await client.chat.completions.create(model="smart", messages=HI)  # type: ignore[arg-type]
        assert gone.value.status_code == 401
        await client.close()

        # the calls made are in the usage log, with their key and team
        status, logs = await admin(gw.url, "GET", f"/admin/logs?key={created['id']}")
        statuses = sorted(r["status"] for r in logs["data"])
        assert statuses == [200, 403, 403]
        assert {r["team"] for r in logs["data"]} == {"search"}
        ok = next(r for r in logs["data"] if r["status"] == 200)
        assert ok["provider"] == "up" and ok["upstream_model"] == "gpt-4o-mini" and ok["prompt_tokens"] == 9
        assert ok["cost_usd"] == pytest.approx(0.012)
        status, usage = await admin(gw.url, "GET", "/admin/usage?group_by=team")
        assert usage["data"][0]["team"] == "search" and usage["data"][0]["requests"] == 3

        status, ready = 0, {}
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/health/ready") as r:
            status, ready = r.status, await r.json()
        assert status == 200 and ready["checks"]["store"] is True


@pytest.mark.parametrize("ledger", ["memory", "redis"])
async def test_budget_never_exceeded_under_200_concurrent_calls(
    upstream: FakeUpstream, tmp_path: Path, ledger: str, request: pytest.FixtureRequest
) -> None:
    extra: dict[str, Any] = {}
    store_url = None
    if ledger == "redis":
        extra["redis"] = {"url": request.getfixturevalue("clean_redis_url")}
        base = request.getfixturevalue("postgres_url")
        store_url = await dbs.fresh_postgres_db(base)
    try:
        async with run_gateway(config(upstream, tmp_path, store_url, **extra)) as gw:
            status, key = await admin(
                gw.url, "POST", "/admin/keys", {"name": "b", "budget": {"amount_usd": 1.0, "period": "monthly"}}
            )
            assert status == 201
            gov = governance(gw)
            now = time.time()
            # $0.80 of the $1.00 already spent this month, recorded by earlier calls
            await gov.store.usage.insert(
                [
                    {"id": "earlier", "request_id": "earlier", "created_at": now - 1, "day": "x", "key_id": key["id"],
                     "status": 200, "stream": False, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0,
                     "cost_usd": 0.80, "price_known": True, "estimated": False, "attempts": 1}
                ]
            )
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0)

            async def call() -> str:
                try:
                    await client.chat.completions.create(model="smart", messages=HI, max_tokens=10)  # type: ignore[arg-type]
                except openai.RateLimitError as err:
                    assert err.code == "budget_exceeded", err
                    assert int(err.response.headers["retry-after"]) >= 1
                    return "refused"
                return "ok"

            results: list[str] = []
            for _ in range(2):  # two waves: the second starts after the first one's calls settled
                results += await asyncio.gather(*(call() for _ in range(200)))
            for _ in range(50):  # then one at a time until even a lone call no longer fits
                results.append(await call())
                if results[-1] == "refused":
                    break
            await client.close()
            line = BudgetLine(f"key:{key['id']}", 1.0, "monthly")
            spent, reserved = await gov.budget.ledger.state(line, time.time())
            assert reserved == 0
            assert spent <= NANO  # never past the budget
            assert results.count("ok") >= 5
            assert results.count("refused") >= 300 and results[-1] == "refused"
            assert spent == pytest.approx(0.80 * NANO + results.count("ok") * 0.012 * NANO)
            await gov.usage.flush()
            since = period_window("monthly", time.time()).start
            assert await gov.store.usage.spend(key_id=key["id"], since=since) <= 1.0 + 1e-9
            status, budgets = await admin(gw.url, "GET", "/admin/budgets")
            assert budgets["data"][0]["spent_usd"] == pytest.approx(spent / NANO)
            assert budgets["data"][0]["remaining_usd"] < 0.031  # the next call's worst case no longer fits
    finally:
        if store_url is not None:
            await dbs.drop_postgres_db(request.getfixturevalue("postgres_url"), store_url)


async def test_streamed_calls_are_recorded_with_their_usage_or_an_estimate(tmp_path: Path) -> None:
    ids: dict[str, Any] = {"id": "c1", "created": 1}

    async def stream(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chunks = [chunk({"role": "assistant", "content": "Hello"}, **ids), chunk({"content": " there!"}, **ids),
                  chunk({}, "stop", **ids)]
        if body.get("model") == "with-usage":
            assert body["stream_options"]["include_usage"] is True  # the gateway asks for it
            chunks.append(usage_chunk(usage(11, 4), **ids))
        return await sse_reply(request, openai_sse(chunks), delay=0.01)

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", stream)
        cfg = config(up, tmp_path)
        cfg["models"] = [
            {"name": "a", "targets": [{"provider": "up", "model": "with-usage", "price": PRICE}]},
            {"name": "b", "targets": [{"provider": "up", "model": "without-usage", "price": PRICE}]},
        ]
        async with run_gateway(cfg) as gw:
            status, key = await admin(gw.url, "POST", "/admin/keys", {"name": "s"})
            assert status == 201
            async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0) as client:
                for model in ["a", "b"]:
                    stream_ = await client.chat.completions.create(
                        model=model, messages=HI, stream=True  # type: ignore[arg-type]
                    )
                    text = "".join([c.choices[0].delta.content or "" async for c in stream_ if c.choices])
                    assert text == "Hello there!"
            _, logs = await admin(gw.url, "GET", f"/admin/logs?key={key['id']}")
            by_model = {r["model"]: r for r in logs["data"]}
            a, b = by_model["a"], by_model["b"]
            assert (a["prompt_tokens"], a["completion_tokens"], a["estimated"]) == (11, 4, False)
            assert a["cost_usd"] == pytest.approx(0.015) and a["stream"] is True and a["ttft_ms"] is not None
            assert b["estimated"] is True and b["prompt_tokens"] > 0 and b["completion_tokens"] > 0
            assert b["cost_usd"] > 0 and b["status"] == 200


@asynccontextmanager
async def gateway_process(cfg: dict[str, Any], path: Path, port: int) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``python -m fluxway serve`` in a subprocess, once it answers; stopped gracefully unless killed."""
    path.write_text(yaml.safe_dump(cfg))
    log = (path.parent / f"{path.stem}-{port}-{time.monotonic_ns()}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluxway", "serve", "-c", str(path), "--port", str(port), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(400):
                if proc.poll() is not None:
                    raise RuntimeError(f"gateway exited {proc.returncode}: {Path(log.name).read_text()}")
                try:
                    async with s.get(f"http://127.0.0.1:{port}/health/live") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("gateway did not answer within 20 s")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


async def test_kill_9_under_load_loses_no_usage_record(
    upstream: FakeUpstream, tmp_path: Path, db_url: str
) -> None:
    cfg = config(upstream, tmp_path, db_url)
    cfg["usage"] = {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 300, "batch_size": 100000}
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    successes = 0
    stop = asyncio.Event()

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal successes
        body = {"model": "smart", "messages": HI, "max_tokens": 5}
        while not stop.is_set():
            try:
                async with s.post(url, json=body, headers={"x-test-delay": "0.002"}) as r:
                    data = await r.json()
                    if r.status == 200 and data["choices"][0]["message"]["content"] == "ok":
                        successes += 1
            except (TimeoutError, aiohttp.ClientError, ValueError):
                if stop.is_set():
                    return
                await asyncio.sleep(0.01)

    async with gateway_process(cfg, tmp_path / "gw.yaml", port) as proc:
        headers = {"authorization": f"Bearer {MASTER}"}
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as s:
            workers = [asyncio.create_task(worker(s)) for _ in range(16)]
            for _ in range(200):  # load until well past a few flushes
                await asyncio.sleep(0.05)
                if successes >= 200:
                    break
            os.kill(proc.pid, signal.SIGKILL)  # mid-load: requests in flight, records spooled
            await asyncio.to_thread(proc.wait)
            stop.set()
            await asyncio.gather(*workers)
    assert successes >= 200
    spooled = [p for p in (tmp_path / "spool").glob("*.jsonl") if p.stat().st_size > 0]
    assert spooled, "the kill should leave records in the spool (the flusher runs every 300 ms)"

    store = Store.open(db_url)
    try:
        stored_before = await store.usage.count()
        async with gateway_process(cfg, tmp_path / "gw.yaml", free_port()):
            after = await store.usage.ids()  # the restart replayed the spool before it answered
        assert len(after) > stored_before
        record_ids = [i for i, _ in after]
        request_ids = [r for _, r in after]
        assert len(set(record_ids)) == len(record_ids)
        assert len(set(request_ids)) == len(request_ids)  # no call recorded twice
        # No call the client saw succeed went unrecorded: the usage record is spooled before the
        # answer is sent. Records beyond the successes are calls in flight at the kill (answered
        # by the gateway, never read by the client).
        assert len(after) >= successes
        assert len(after) <= successes + 16  # at most one call in flight per worker
        assert [p for p in (tmp_path / "spool").glob("*.jsonl") if p.stat().st_size > 0] == []
    finally:
        await store.close()
