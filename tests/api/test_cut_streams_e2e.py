"""End to end: a stream that ends early still has its usage record (issue 9 #6).

Before: 50 streams open at shutdown were cut at a hard-coded 30 s with 0 records. Now the drain is
``server.drain_s`` and every stream that ends early (shutdown cut: 503, client gone: 499, upstream
failure mid-stream) is recorded with the tokens delivered so far, its error marked ``partial:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fluxway.store import Store
from tests.api.test_governance_e2e import gateway_process
from tests.store import dbs
from tests.support.gateway import run_gateway
from tests.support.openai_bodies import chunk, sse_frame
from tests.support.ports import free_port
from tests.support.upstream import FakeUpstream

db_url = dbs.db_url

MASTER = "sk-master-cut"


def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse_frame(chunk(delta, finish, id="chatcmpl-s", created=1))


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """Streams 40 words 0.05 s apart; a body containing ``cut-me`` is cut after 3 words."""

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(frame({"role": "assistant", "content": ""}))
        for i in range(40):
            await asyncio.sleep(0.05)
            await resp.write(frame({"content": "word "}))
            if b"cut-me" in raw and i == 2:
                await asyncio.sleep(0.01)
                assert request.transport is not None
                request.transport.abort()
                return resp
        await resp.write(frame({}, "stop"))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat)
        yield up


def config(up: FakeUpstream, tmp_path: Path, db_url: str, **server: Any) -> dict[str, Any]:
    return {
        "server": server,
        "auth": {"master_key": MASTER},
        "store": {"url": db_url},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
    }


async def records(db_url: str) -> list[dict[str, Any]]:
    store = Store.open(db_url)
    try:
        rows, _ = await store.usage.logs(limit=1000)
        return rows
    finally:
        await store.close()


async def open_stream(s: aiohttp.ClientSession, base: str, text: str = "Hi") -> aiohttp.ClientResponse:
    body = {"model": "smart", "stream": True, "messages": [{"role": "user", "content": text}]}
    r = await s.post(base + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER}"})
    assert r.status == 200
    await r.content.readuntil(b"\n\n")  # the first event has arrived: the stream is open
    return r


async def drain(r: aiohttp.ClientResponse) -> bytes:
    out = b""
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        async with asyncio.timeout(5):
            out = await r.content.read()
    return out


async def test_streams_cut_at_shutdown_are_recorded_partial(
    upstream: FakeUpstream, tmp_path: Path, db_url: str
) -> None:
    n = 8
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as s:
        gw = await stack.enter_async_context(run_gateway(config(upstream, tmp_path, db_url, drain_s=0.4)))
        streams = [await open_stream(s, gw.url) for _ in range(n)]
        await asyncio.sleep(0.2)  # a few words delivered to each
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        readers = [asyncio.create_task(drain(r)) for r in streams]
        await stack.aclose()  # shutdown with the streams open: cut after server.drain_s
        took = loop.time() - t0
        tails = await asyncio.gather(*readers)
    assert took < 5.0  # 0.4 s drain, not the old hard-coded 30 s
    assert sum(b"shutting down" in t for t in tails) == n  # each client saw a clean error event
    rows = [r for r in await records(db_url) if r["stream"]]
    assert len(rows) == n  # client-seen streams == records
    for r in rows:
        assert r["status"] == 503
        assert r["error"].startswith("partial: cut at shutdown")
        assert r["completion_tokens"] > 0 and r["estimated"]


async def test_client_gone_mid_stream_is_recorded_partial(
    upstream: FakeUpstream, tmp_path: Path, db_url: str
) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url)) as gw:
        async with aiohttp.ClientSession() as s:
            r = await open_stream(s, gw.url)
            await asyncio.sleep(0.2)
            r.close()  # hang up mid-stream
        for _ in range(100):
            if gw.runtime.in_flight == 0:
                break
            await asyncio.sleep(0.02)
    rows = await records(db_url)
    assert len(rows) == 1
    assert rows[0]["status"] == 499
    assert rows[0]["error"].startswith("partial: client closed the stream")
    assert rows[0]["completion_tokens"] > 0


async def test_upstream_failure_mid_stream_is_recorded_partial(
    upstream: FakeUpstream, tmp_path: Path, db_url: str
) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url)) as gw, aiohttp.ClientSession() as s:
        r = await open_stream(s, gw.url, "cut-me")
        tail = await drain(r)
        assert b"error" in tail
    rows = await records(db_url)
    assert len(rows) == 1
    assert rows[0]["error"].startswith("partial: upstream failed mid-stream")
    assert rows[0]["completion_tokens"] > 0


async def test_kill_9_mid_stream_leaves_the_provisional_record(
    upstream: FakeUpstream, tmp_path: Path, db_url: str
) -> None:
    cfg = config(upstream, tmp_path, db_url)
    port = free_port()
    n = 3
    async with gateway_process(cfg, tmp_path / "gw.yaml", port) as proc, aiohttp.ClientSession() as s:
        streams = [await open_stream(s, f"http://127.0.0.1:{port}") for _ in range(n)]
        await asyncio.sleep(1.5)  # past the first checkpoint (1 s) of each 2 s stream
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: no final record can be written
        await asyncio.to_thread(proc.wait)
        for r in streams:
            await drain(r)
    async with gateway_process(cfg, tmp_path / "gw.yaml", free_port()):
        pass  # the restart replays the spool into the store
    rows = await records(db_url)
    assert len(rows) == n  # every stream the clients saw open has its record
    for r in rows:
        assert r["status"] == 0 and r["error"].startswith("provisional:")
        assert r["prompt_tokens"] > 0 and r["stream"]
        assert r["completion_tokens"] >= 20 and r["estimated"]  # ~20 words delivered by the last checkpoint


async def test_a_finished_stream_replaces_its_provisional_record(
    upstream: FakeUpstream, tmp_path: Path, db_url: str
) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url)) as gw, aiohttp.ClientSession() as s:
        r = await open_stream(s, gw.url)
        await gw.runtime.governance.usage.flush()  # the provisional record is stored
        assert [row["status"] for row in await records(db_url)] == [0]
        tail = await drain(r)
        assert b"[DONE]" in tail
    rows = await records(db_url)
    assert [(row["status"], row["error"]) for row in rows] == [(200, None)]
    assert rows[0]["completion_tokens"] > 0
