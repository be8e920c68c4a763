"""Breakers never make things worse (issue 10): with every breaker open, a call still gets its retry
budget, forced through at the target soonest to recover (Envoy's panic mode)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
from aiohttp import web

from tests.api.test_chat_e2e import COMPLETION
from tests.support.gateway import run_gateway
from tests.support.upstream import FakeUpstream, json_reply


async def test_flaky_single_target_answers_every_call_with_retries() -> None:
    calls = itertools.count()

    async def flaky(request: web.Request) -> web.StreamResponse:
        if next(calls) % 2 == 0:
            return web.json_response({"error": {"message": "flaky", "type": "server_error"}}, status=500)
        return json_reply(COMPLETION)

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", flaky)
        cfg: dict[str, Any] = {
            "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["k"]}],
            "models": [{"name": "solo", "targets": [{"provider": "up", "model": "gpt-4o-mini"}],
                        "retry": {"attempts": 2, "backoff_ms": 1}}],
        }
        async with run_gateway(cfg) as gw, aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(60):
                body = {"model": "solo", "messages": [{"role": "user", "content": "hi"}]}
                async with http.post(gw.url + "/v1/chat/completions", json=body) as resp:
                    statuses.append(resp.status)
    # The failure-rate rule opens the only breaker every few calls (5 failures in 10 outcomes); before
    # panic mode, the call whose failure opened it got 502 instead of its retry.
    assert statuses == [200] * 60
    assert len(up.requests) == 120  # each call: one failure, then its retry


async def test_a_call_refused_by_an_open_breaker_still_gets_its_retry_budget() -> None:
    async def down(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "down", "type": "server_error"}}, status=503)

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", down)
        cfg: dict[str, Any] = {
            "auth": {"master_key": "sk-m"},
            "usage": {"flush_interval_ms": 20},
            "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["k"]}],
            "models": [{"name": "solo", "targets": [{"provider": "up", "model": "gpt-4o-mini"}],
                        "retry": {"attempts": 3, "backoff_ms": 1}}],
        }
        headers = {"authorization": "Bearer sk-m"}
        async with run_gateway(cfg) as gw, aiohttp.ClientSession(headers=headers) as http:
            for _ in range(4):
                body = {"model": "solo", "messages": [{"role": "user", "content": "hi"}]}
                async with http.post(gw.url + "/v1/chat/completions", json=body) as resp:
                    assert resp.status == 502
                    assert resp.headers["x-fluxway-attempts"] == "3"
            records: list[dict[str, Any]] = []
            for _ in range(100):  # the recorder flushes in the background
                async with http.get(gw.url + "/admin/logs") as resp:
                    records = (await resp.json())["data"]
                if len(records) == 4:
                    break
                await asyncio.sleep(0.05)
    assert len(up.requests) == 12
    assert [(r["status"], r["attempts"]) for r in records] == [(502, 3)] * 4  # failed calls record their attempts
