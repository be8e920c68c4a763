"""/metrics and /admin/providers through HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.api.test_chat_e2e import chat_handler, config
from tests.support.gateway import run_gateway
from tests.support.upstream import FakeUpstream


async def test_metrics_count_requests_and_show_targets() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat_handler)
        async with run_gateway(config(up.url)) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            for _ in range(3):
                await client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="nope-x", messages=[{"role": "user", "content": "hi"}])
            async with aiohttp.ClientSession() as http, http.get(gw.url + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
    assert 'fluxway_requests_total{ingress="openai",model="smart",status="200"} 3' in text
    assert 'fluxway_requests_total{ingress="openai",model="(none)",status="404"} 1' in text
    assert 'fluxway_tokens_total{model="smart",kind="prompt"} 27' in text
    assert "fluxway_upstream_attempts_total 3" in text
    assert 'fluxway_target_breaker_state{target="up/gpt-4o-mini"} 0' in text


async def test_admin_providers_needs_admin_and_shows_breakers() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat_handler)
        async with run_gateway(config(up.url, auth={"master_key": "sk-m"})) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0)
            await client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])
            async with aiohttp.ClientSession() as http:
                async with http.get(gw.url + "/admin/providers") as resp:
                    assert resp.status == 401
                async with http.get(gw.url + "/admin/providers", headers={"authorization": "Bearer sk-m"}) as resp:
                    assert resp.status == 200
                    data: Any = await resp.json()
                async with http.get(gw.url + "/health/ready") as resp:
                    assert resp.status == 200
    assert data["providers"][0] == {"name": "up", "type": "openai", "keys": 2, "health_check": False}
    assert data["targets"]["up/gpt-4o-mini"]["state"] == "closed"
