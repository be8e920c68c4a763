"""End to end: request and response bodies kept with the usage record (observability.logs.bodies),
masked, capped, said missing when they are, and deleted with their records by the retention job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from fluxway.policy.governance import Governance
from tests.store import dbs
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import chunk, completion, sse_frame
from tests.support.replies import json_reply
from tests.support.upstream import FakeUpstream

db_url = dbs.db_url

MASTER = "sk-master-bodies"
EMAIL = "alice.smith@example.com"
LEAKED = "sk-proj-Abc123Def456Ghi789"
SECRET_PROMPT = f"My email is {EMAIL} and my key is {LEAKED}; card 4111 1111 1111 1111."


def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse_frame(chunk(delta, finish, id="chatcmpl-b", created=1))


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if b'"stream":true' not in raw.replace(b" ", b""):
            return json_reply(completion(f"Sure, I will write to {EMAIL}."))
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(frame({"role": "assistant", "content": ""}))
        for i in range(6):
            await resp.write(frame({"content": f"w{i} "}))
            await asyncio.sleep(0.02)
            if b"cut-me" in raw and i == 2:
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


def config(up: FakeUpstream, tmp_path: Path, db_url: str, **logs: Any) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": db_url},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "observability": {"logs": logs},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
    }


async def call(gw: Gateway, content: str, stream: bool = False) -> str:
    body = {"model": "smart", "messages": [{"role": "user", "content": content}], "stream": stream}
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
        s.post(gw.url + "/v1/chat/completions", json=body) as r,
    ):
        assert r.status == 200
        await r.read()
        return r.headers["x-request-id"]


async def logs(gw: Gateway, **params: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
        s.get(gw.url + "/admin/logs", params=params) as r,
    ):
        assert r.status == 200
        data: list[dict[str, Any]] = (await r.json())["data"]
        return data


async def record(gw: Gateway, request_id: str) -> dict[str, Any]:
    for _ in range(100):
        rows = [r for r in await logs(gw, bodies="true") if r["request_id"] == request_id and r["status"] != 0]
        if rows:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no record for {request_id}")


async def test_redacted_bodies_mask_secrets_and_pii(upstream: FakeUpstream, tmp_path: Path, db_url: str) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url)) as gw:  # bodies: redacted is the default
        rid = await call(gw, SECRET_PROMPT)
        rec = await record(gw, rid)
        assert rec["body_status"] == "redacted"
        req, resp = rec["request_body"], rec["response_body"]
        assert EMAIL not in req and LEAKED not in req and "4111 1111" not in req
        assert "[EMAIL]" in req and "[REDACTED]" in req and "[CARD]" in req
        assert orjson.loads(req)["messages"][0]["role"] == "user"  # still JSON
        assert EMAIL not in resp and "[EMAIL]" in resp and "Sure, I will write to" in resp
        light = next(r for r in await logs(gw) if r["request_id"] == rid)
        assert "request_body" not in light and light["body_status"] == "redacted"  # lists stay light


async def test_full_bodies_are_kept_as_sent(upstream: FakeUpstream, tmp_path: Path, db_url: str) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url, bodies="full")) as gw:
        rid = await call(gw, SECRET_PROMPT)
        rec = await record(gw, rid)
        assert rec["body_status"] == "full"
        assert orjson.loads(rec["request_body"])["messages"][0]["content"] == SECRET_PROMPT
        assert EMAIL in orjson.loads(rec["response_body"])["choices"][0]["message"]["content"]


async def test_bodies_off_stores_none_and_does_not_assemble_streams(
    upstream: FakeUpstream, tmp_path: Path, db_url: str
) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url, bodies="off")) as gw:
        gov = gw.runtime.governance
        assert isinstance(gov, Governance) and gov.usage.wants_response is False  # a stream pays nothing
        for stream in (False, True):
            rid = await call(gw, SECRET_PROMPT, stream)
            rec = await record(gw, rid)
            assert rec["body_status"] == "off"
            assert rec["request_body"] is None and rec["response_body"] is None


async def test_streams_keep_the_assembled_answer_and_a_cut_says_so(
    upstream: FakeUpstream, tmp_path: Path, db_url: str
) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url)) as gw:
        rid = await call(gw, "hello", stream=True)
        rec = await record(gw, rid)
        assert rec["body_status"] == "redacted"
        answer = orjson.loads(rec["response_body"])
        assert answer["choices"][0]["message"]["content"] == "w0 w1 w2 w3 w4 w5 "
        rid = await call(gw, "cut-me", stream=True)
        rec = await record(gw, rid)
        assert rec["body_status"] == "stream_cut"
        assert orjson.loads(rec["response_body"])["choices"][0]["message"]["content"].startswith("w0 w1 w2")


async def test_oversize_bodies_are_capped_and_marked(upstream: FakeUpstream, tmp_path: Path, db_url: str) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url, max_body_bytes=1024)) as gw:
        rid = await call(gw, "x" * 5000)
        rec = await record(gw, rid)
        assert rec["body_status"] == "truncated"
        req = rec["request_body"]
        assert len(req.encode()) < 1024 + 64 and req.endswith("bytes]") and "…[truncated:" in req
        assert orjson.loads(rec["response_body"])["object"] == "chat.completion"  # the small one is whole


async def test_retention_deletes_old_records_in_batches(upstream: FakeUpstream, tmp_path: Path, db_url: str) -> None:
    async with run_gateway(config(upstream, tmp_path, db_url, retention_days=30)) as gw:
        gov = gw.runtime.governance
        assert isinstance(gov, Governance)
        now = time.time()
        old = [
            {"id": f"old{i}", "request_id": f"old{i}", "created_at": now - 31 * 86400 - i, "day": "x",
             "status": 200, "attempts": 1}
            for i in range(1200)
        ]
        await gov.store.usage.insert([*old, {"id": "recent", "request_id": "recent", "created_at": now - 29 * 86400,
                                             "day": "x", "status": 200, "attempts": 1}])
        rid = await call(gw, "hello")
        await record(gw, rid)
        assert await gov.usage.enforce_retention() == 1200  # three batches of at most 500
        assert await gov.store.usage.count(request_id="recent") == 1
        assert await gov.store.usage.count(request_id=rid) == 1
        assert await gov.store.usage.count() == 2
        assert await gov.usage.enforce_retention() == 0
