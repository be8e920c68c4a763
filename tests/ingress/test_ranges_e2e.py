"""Input checked before money is spent (issue 10): out-of-range sampling and size parameters get a 400
naming the field, in the caller's shape, with no upstream call."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.support.gateway import run_gateway
from tests.support.openai_upstream import config, openai_upstream

HI = [{"role": "user", "content": "hi"}]

OPENAI_BAD = [
    ("n", 0), ("n", -1), ("max_tokens", 0), ("max_completion_tokens", -5), ("temperature", 2.5),
    ("temperature", -0.1), ("top_p", 1.5), ("presence_penalty", 3), ("frequency_penalty", -2.5),
    ("top_logprobs", 21),
]
ANTHROPIC_BAD = [("temperature", 1.5), ("top_p", -0.2), ("top_k", -1), ("max_tokens", 0)]


@pytest.mark.parametrize(("field", "value"), OPENAI_BAD)
async def test_openai_ranges(field: str, value: Any) -> None:
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw, aiohttp.ClientSession() as http:
        body = {"model": "smart", "messages": HI, field: value}
        async with http.post(gw.url + "/v1/chat/completions", json=body) as resp:
            err: Any = await resp.json()
            assert resp.status == 400, err
        ok = {"model": "smart", "messages": HI, "temperature": 2, "top_p": 1, "n": 1, "max_tokens": 1}
        async with http.post(gw.url + "/v1/chat/completions", json=ok) as resp:
            assert resp.status == 200
    assert err["error"]["param"] == field and field in err["error"]["message"]
    assert len(up.requests) == 1  # only the valid call went upstream


@pytest.mark.parametrize(("field", "value"), ANTHROPIC_BAD)
async def test_anthropic_ranges(field: str, value: Any) -> None:
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw, aiohttp.ClientSession() as http:
        body = {"model": "smart", "messages": HI, "max_tokens": 5, field: value}
        async with http.post(gw.url + "/v1/messages", json=body) as resp:
            err: Any = await resp.json()
            assert resp.status == 400, err
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert field in err["error"]["message"]
    assert up.requests == []
