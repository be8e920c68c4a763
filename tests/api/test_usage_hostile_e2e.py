"""Issue 9 #1: one hostile request must never stop usage recording (SQLite and PostgreSQL).

A model name with NUL, an ``x-request-id`` over 128 characters, a model name over 256 characters and
an upstream reporting more than 2^31 tokens each used to fail the batch insert forever on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from fluxway.policy.governance import Governance
from tests.store import dbs
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import completion, usage
from tests.support.private_pg import PrivatePostgres
from tests.support.replies import json_reply
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-hostile"
db_url = dbs.db_url
BIG = 2**31 + 7


async def _chat(request: web.Request) -> web.StreamResponse:
    # The test tells the mock what usage to report through the model name: "tokens-<n>".
    model = str(orjson.loads(await request.read()).get("model", ""))
    return json_reply(completion(tokens=usage(int(model[7:]) if model.startswith("tokens-") else 9, 3)))


def _config(up: FakeUpstream, tmp_path: Path, store_url: str) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": store_url},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
    }


async def _call(gw: Gateway, model: str, headers: dict[str, str] | None = None) -> int:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    h = {"authorization": f"Bearer {MASTER}", "content-type": "application/json", **(headers or {})}
    try:
        async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/chat/completions", data=body, headers=h) as r:
            await r.read()
            return r.status
    except aiohttp.ServerDisconnectedError:
        return -1


async def _ready(gw: Gateway) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/health/ready") as r:
        return r.status, await r.json()


def _gov(gw: Gateway) -> Governance:
    gov = gw.runtime.governance
    assert isinstance(gov, Governance)
    return gov


async def _wait_records(gw: Gateway, n: int, timeout: float = 10.0) -> int:
    store = _gov(gw).store.usage
    count = -1
    async with asyncio.timeout(timeout):
        while count < n:
            try:
                count = await store.count()
            except Exception:  # the store is not back (or not migrated) yet
                count = -1
            if count < n:
                await asyncio.sleep(0.05)
    return count


async def test_hostile_fields_never_stop_usage_recording(db_url: str, tmp_path: Path) -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", _chat)
        cfg = _config(up, tmp_path, db_url)
        async with run_gateway(cfg) as gw:
            # A direct name the mock accepts, with a NUL. Its answer is the inference path's business
            # (the x-fluxway-model header; issue 9 "Also found", another change): here only its record matters.
            await _call(gw, "up/a\u0000b")
            statuses = [
                await _call(gw, "smart", {"x-request-id": "r" * 200}),
                await _call(gw, "up/" + "m" * 300),
                await _call(gw, f"up/tokens-{BIG}"),
            ]
            assert all(0 < s < 500 for s in statuses), statuses
            assert await _call(gw, "smart", {"x-request-id": "after-the-bad-ones"}) == 200
            assert await _wait_records(gw, 5) == 5
            gov = _gov(gw)
            assert gov.usage.healthy and gov.usage.quarantine.count == 0
            status, body = await _ready(gw)
            assert status == 200 and body["checks"]["store"] is True, body

            rows, _ = await gov.store.usage.logs(limit=10)
            by_rid = {r["request_id"]: r for r in rows}
            assert "after-the-bad-ones" in by_rid
            assert all(len(r["request_id"]) <= 128 for r in rows)
            assert not any("r" * 129 in r["request_id"] for r in rows)  # replaced, not cut
            assert all(r["model"] is None or ("\x00" not in r["model"] and len(r["model"]) <= 256) for r in rows)
            assert max(r["prompt_tokens"] for r in rows) == BIG  # 64-bit token columns
        # a restart on the same store and spool works, and keeps recording
        async with run_gateway(cfg) as gw:
            assert (await _ready(gw))[0] == 200
            assert await _call(gw, "smart") == 200
            assert await _wait_records(gw, 6) == 6


async def test_a_long_x_request_id_is_replaced_in_the_answer(tmp_path: Path) -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", _chat)
        async with run_gateway(_config(up, tmp_path, f"sqlite:///{tmp_path}/f.db")) as gw:
            body = orjson.dumps({"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
            h = {"authorization": f"Bearer {MASTER}", "content-type": "application/json"}
            async with aiohttp.ClientSession() as s:
                async with s.post(gw.url + "/v1/chat/completions", data=body,
                                  headers={**h, "x-request-id": "x" * 129}) as r:
                    assert r.status == 200 and r.headers["x-request-id"] != "x" * 129
                async with s.post(gw.url + "/v1/chat/completions", data=body,
                                  headers={**h, "x-request-id": "abc:DEF-1.2_3"}) as r:
                    assert r.headers["x-request-id"] == "abc:DEF-1.2_3"


async def test_a_garbage_spool_never_stops_start_up(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    good = {"id": "rec-good-1", "request_id": "r1", "created_at": 1.0, "day": "1970-01-01", "status": 200,
            "stream": False, "prompt_tokens": 2**40, "completion_tokens": 1, "cached_tokens": 0, "cost_usd": "NaN",
            "price_known": True, "estimated": False, "attempts": 1, "model": "m\x00" + "x" * 400}
    (spool / "usage-1-1-1.jsonl").write_bytes(
        b"\x00\xff garbage\n[1, 2]\n{\"torn\": \n" + orjson.dumps(good) + b"\n"
    )
    (spool / "usage-2-2-2.jsonl").write_bytes(b"\xde\xad\xbe\xef" * 100)
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", _chat)
        async with run_gateway(_config(up, tmp_path, f"sqlite:///{tmp_path}/f.db")) as gw:
            assert (await _ready(gw))[0] == 200
            assert await _call(gw, "smart") == 200
            assert await _wait_records(gw, 2) == 2
            gov = _gov(gw)
            assert gov.usage.quarantine.count == 4
            async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
                assert "fluxway_usage_quarantined_total 4" in await r.text()
    lines = (spool / "quarantine.jsonl").read_bytes().splitlines()
    assert len(lines) == 4 and all("reason" in orjson.loads(line) for line in lines)


async def test_start_while_postgres_is_down_serves_and_catches_up(tmp_path: Path) -> None:
    pg = await asyncio.to_thread(PrivatePostgres)
    try:
        async with FakeUpstream() as up:
            up.route("POST", "/v1/chat/completions", _chat)
            # PostgreSQL is not running: the gateway starts, serves the master key and the configured models
            async with run_gateway(_config(up, tmp_path, pg.url)) as gw:
                status, body = await _ready(gw)
                assert status == 200 and body["status"] == "degraded" and "store" in body["degraded"], body
                assert [await _call(gw, "smart") for _ in range(3)] == [200, 200, 200]
                gov = _gov(gw)
                assert gov.usage.spool.pending + sum(1 for _ in (tmp_path / "spool").glob("usage-*.jsonl")) > 0
                await asyncio.to_thread(pg.start)
                # the store comes back: migrated, and the spooled records land
                assert await _wait_records(gw, 3, timeout=30) == 3
                async with asyncio.timeout(15):
                    while (await _ready(gw))[1]["status"] != "ok":
                        await asyncio.sleep(0.1)
                assert await _call(gw, "smart") == 200
                assert await _wait_records(gw, 4) == 4
    finally:
        await asyncio.to_thread(pg.cleanup)
