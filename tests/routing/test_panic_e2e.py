"""Breakers never make things worse (issue 10): with every breaker open, a call still gets its retry
budget, forced through at the target soonest to recover (Envoy's panic mode)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.support.gateway import run_gateway
from tests.support.openai_bodies import error
from tests.support.openai_upstream import COMPLETION
from tests.support.replies import in_turn, replying
from tests.support.upstream import FakeUpstream


async def test_flaky_single_target_answers_every_call_with_retries() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", in_turn(replying(error("flaky"), 500), replying(COMPLETION)))
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
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", replying(error("down"), 503))
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
