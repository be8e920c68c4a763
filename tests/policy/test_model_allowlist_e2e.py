"""Issue 9 item 3: no route a call may take (fallbacks, context fallbacks, streams) reaches a model the
key may not use, and a budgeted key cannot spend on a model with no known price."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway import run_gateway
from tests.support.openai_bodies import completion, error, openai_sse
from tests.support.openai_upstream import STREAM
from tests.support.replies import json_reply, sse_reply
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-allow"
HI = [{"role": "user", "content": "Hi"}]
SMALL = {"max_tokens": 10}


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """Model "broken-*" fails (500), "long-*" reports a context-length error, anything else answers."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        if model.startswith("broken"):
            return json_reply(error("boom"), 500)
        if model.startswith("long"):
            overflow = error("maximum context length exceeded", "invalid_request_error",
                             code="context_length_exceeded", param="messages")
            return json_reply(overflow, 400)
        if body.get("stream"):
            return await sse_reply(request, openai_sse(STREAM))
        return json_reply(completion(model=model))

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat)
        yield up


def _config(up: FakeUpstream, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "auth": {"master_key": MASTER},
        "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool")},
        "providers": [
            {"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"],
             "timeout": {"connect": 2, "first_token": 5, "total": 10}}
        ],
        "models": [
            {"name": "cheap", "targets": [{"provider": "up", "model": "broken-cheap"}], "fallbacks": ["expensive"],
             "retry": {"attempts": 1}},
            {"name": "short", "targets": [{"provider": "up", "model": "long-short"}], "context_fallback": "expensive"},
            {"name": "expensive", "targets": [{"provider": "up", "model": "gpt-4o"}]},
            {"name": "custom", "targets": [{"provider": "up", "model": "ft:gpt-4o:acme::x1"}]},
            {"name": "custom-priced", "targets": [{"provider": "up", "model": "ft:gpt-4o:acme::x2",
                                                   "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}]},
            # An unlisted snapshot of a priced model: unpriced (never a prefix guess).
            {"name": "pro", "targets": [{"provider": "up", "model": "gpt-4o-2031-01-01"}]},
        ],
    }
    cfg.update(extra)
    return cfg


async def _post(base: str, key: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {key}"}) as s,
        s.post(base + path, json=body) as r,
    ):
        text = await r.text()
        try:
            return r.status, await r.json(content_type=None)
        except ValueError:
            return r.status, text


async def _key(base: str, **body: Any) -> str:
    status, created = await _post(base, MASTER, "/admin/keys", {"name": "k", **body})
    assert status == 201, created
    return str(created["key"])


def _served_models(up: FakeUpstream) -> list[str]:
    return [r.json()["model"] for r in up.requests]


async def test_fallback_to_a_model_the_key_may_not_use_is_not_taken(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(_config(upstream, tmp_path)) as gw:
        only_cheap = await _key(gw.url, models=["cheap"])
        status, body = await _post(gw.url, only_cheap, "/v1/chat/completions", {"model": "cheap", "messages": HI})
        assert status == 502, body
        assert _served_models(upstream) == ["broken-cheap"]  # "expensive" was never called

        upstream.requests.clear()
        status, body = await _post(gw.url, only_cheap, "/v1/chat/completions",
                                   {"model": "cheap", "messages": HI, "stream": True})
        assert status == 502, body
        assert _served_models(upstream) == ["broken-cheap"]

        # A key allowed both (and the master key) still gets the fallback.
        both = await _key(gw.url, models=["cheap", "expensive"])
        for key in (both, MASTER):
            upstream.requests.clear()
            status, body = await _post(gw.url, key, "/v1/chat/completions", {"model": "cheap", "messages": HI})
            assert status == 200, body
            assert _served_models(upstream) == ["broken-cheap", "gpt-4o"]
        upstream.requests.clear()
        status, body = await _post(gw.url, both, "/v1/chat/completions",
                                   {"model": "cheap", "messages": HI, "stream": True})
        assert status == 200 and "data: [DONE]" in body, body
        assert _served_models(upstream) == ["broken-cheap", "gpt-4o"]


async def test_team_allowlist_also_limits_fallbacks(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(_config(upstream, tmp_path)) as gw:
        status, team = await _post(gw.url, MASTER, "/admin/teams", {"name": "t", "models": ["cheap"]})
        assert status == 201, team
        key = await _key(gw.url, team="t")
        status, body = await _post(gw.url, key, "/v1/chat/completions", {"model": "cheap", "messages": HI})
        assert status == 502, body
        assert _served_models(upstream) == ["broken-cheap"]


async def test_context_fallback_respects_the_allowlist(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(_config(upstream, tmp_path)) as gw:
        only_short = await _key(gw.url, models=["short"])
        status, body = await _post(gw.url, only_short, "/v1/chat/completions", {"model": "short", "messages": HI})
        assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
        assert _served_models(upstream) == ["long-short"]

        upstream.requests.clear()
        status, body = await _post(gw.url, MASTER, "/v1/chat/completions", {"model": "short", "messages": HI})
        assert status == 200, body
        assert _served_models(upstream) == ["long-short", "gpt-4o"]


async def test_budgeted_key_refuses_unpriced_models(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(_config(upstream, tmp_path)) as gw:
        budgeted = await _key(gw.url, budget={"amount_usd": 0.05, "period": "monthly"})
        for model in ("custom", "pro", "up/ft:gpt-4o:acme::x1"):
            status, body = await _post(
                gw.url, budgeted, "/v1/chat/completions", {"model": model, "messages": HI, **SMALL}
            )
            assert status == 403, (model, body)
            assert body["error"]["code"] == "model_unpriced" and body["error"]["param"] == "model"
            assert model in body["error"]["message"]
        assert upstream.requests == []  # refused before any upstream call
        # A price in the config makes it usable; a known model is fine.
        for model in ("custom-priced", "expensive"):
            status, body = await _post(
                gw.url, budgeted, "/v1/chat/completions", {"model": model, "messages": HI, **SMALL}
            )
            assert status == 200, (model, body)
        # A key without a budget is not concerned.
        free = await _key(gw.url)
        status, body = await _post(gw.url, free, "/v1/chat/completions", {"model": "custom", "messages": HI})
        assert status == 200, body
        # The Anthropic shape gets the same refusal in its own shape.
        async with (
            aiohttp.ClientSession(headers={"x-api-key": budgeted, "anthropic-version": "2023-06-01"}) as s,
            s.post(gw.url + "/v1/messages", json={"model": "custom", "max_tokens": 5, "messages": HI}) as r,
        ):
            body = await r.json()
            assert r.status == 403 and body["type"] == "error", body
            assert "custom" in body["error"]["message"]


async def test_allow_unpriced_lets_budgeted_keys_call_them(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(_config(upstream, tmp_path, budgets={"allow_unpriced": True})) as gw:
        budgeted = await _key(gw.url, budget={"amount_usd": 0.05, "period": "monthly"})
        results = await asyncio.gather(*[
            _post(gw.url, budgeted, "/v1/chat/completions", {"model": "custom", "messages": HI}) for _ in range(3)
        ])
        assert [s for s, _ in results] == [200, 200, 200]
