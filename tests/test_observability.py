"""/metrics and /admin/providers through HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from fluxway.routing.health import DEFAULT_MAX_DYNAMIC
from tests.support.gateway import run_gateway
from tests.support.openai_upstream import config, openai_upstream


async def test_metrics_count_requests_and_show_targets() -> None:
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw:
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
    async with openai_upstream() as up, run_gateway(config(up.url, auth={"master_key": "sk-m"})) as gw:
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


async def test_client_chosen_names_never_grow_state_or_metrics() -> None:
    """Issue 9 item 8: thousands of direct names stay out of /metrics and the board stays bounded."""
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw, aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(32)

        async def call(i: int) -> int:
            body = {"model": f"up/bogus-{i}", "messages": [{"role": "user", "content": "hi"}]}
            async with sem, http.post(gw.url + "/v1/chat/completions", json=body) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*[call(i) for i in range(1100)])
        assert set(statuses) == {200}
        board = gw.runtime.executor.board
        assert board.dynamic_targets == DEFAULT_MAX_DYNAMIC
        async with http.get(gw.url + "/metrics") as resp:
            text = await resp.text()
    assert "bogus" not in text
    assert 'fluxway_requests_total{ingress="openai",model="(direct)",status="200"} 1100' in text
    assert 'fluxway_target_breaker_state{target="up/gpt-4o-mini"} 0' in text


async def test_metrics_token_guards_the_scrape() -> None:
    async with openai_upstream() as up:
        cfg = config(up.url, auth={"master_key": "sk-m"}, observability={"metrics": {"token": "scrape-me"}})
        async with run_gateway(cfg) as gw, aiohttp.ClientSession() as http:
            for headers, status in [
                ({}, 401),
                ({"authorization": "Bearer wrong"}, 401),
                ({"authorization": "Bearer scrape-me"}, 200),
                ({"authorization": "Bearer sk-m"}, 200),  # an admin key may scrape too
            ]:
                async with http.get(gw.url + "/metrics", headers=headers) as resp:
                    assert resp.status == status, headers
                    if status == 401:
                        body: Any = await resp.json()
                        assert body["error"]["code"] == "unauthorized"
                    else:
                        assert "fluxway_requests_total" in await resp.text()
        # Open mode (no master key): a made-up bearer is not an admin key.
        cfg = config(up.url, observability={"metrics": {"token": "scrape-me"}})
        async with (
            run_gateway(cfg) as gw,
            aiohttp.ClientSession() as http,
            http.get(gw.url + "/metrics", headers={"authorization": "Bearer anything"}) as resp,
        ):
            assert resp.status == 401
