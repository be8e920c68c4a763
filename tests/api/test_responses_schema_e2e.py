"""Every recorded answer of each provider, through Fluxway's /v1/responses, gives answers OpenAI's
published OpenAPI document accepts: the Response object (or the event stream, or the error body)
Fluxway makes of each upstream answer under tests/fixtures/ (Anthropic, Gemini) and of OpenAI-compatible
answers (tests/support/openai_bodies.py), checked on the wire (tests/support/responses_schema.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import chunk, completion, error, openai_sse, usage, usage_chunk
from tests.support.replies import Handler, json_reply, sse_events, sse_reply
from tests.support.responses_schema import check_answer
from tests.support.responses_schema import sse_events as response_events
from tests.support.upstream import FakeUpstream

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOOL: Any = {"type": "function", "name": "get_weather", "description": "Weather in a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TOKENS = usage(7, 5, prompt_tokens_details={"cached_tokens": 1}, completion_tokens_details={"reasoning_tokens": 2})

PROVIDERS: dict[str, tuple[str, str, str]] = {  # type -> (model, JSON route, stream route)
    "anthropic": ("claude-sonnet-4-5", "/v1/messages", "/v1/messages"),
    "gemini": ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent",
               "/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
    "openai": ("gpt-4o-mini", "/v1/chat/completions", "/v1/chat/completions"),
}


def _recorded(provider: str, name: str, status: int = 200) -> Handler:
    data = (FIXTURES / provider / name).read_bytes()

    async def handle(request: web.Request) -> web.StreamResponse:
        if name.endswith(".sse"):
            return await sse_reply(request, sse_events(data))
        return web.Response(body=data, status=status, content_type="application/json")

    return handle


def _openai_json(body: Any, status: int = 200) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return json_reply(body, status)

    return handle


def _openai_stream(chunks: list[dict[str, Any]]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await sse_reply(request, openai_sse(chunks))

    return handle


_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
_REASONED = [chunk({"role": "assistant", "reasoning_content": "Think"}), chunk({"reasoning_content": "ing."}),
             chunk({"content": "4"}), chunk({"tool_calls": [{"index": 0, **_CALL}]}),
             chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                    "function": {"name": "get_weather", "arguments": "{}"}}]}),
             chunk({}, "tool_calls"), usage_chunk(TOKENS)]

# (provider, what the upstream answers, stream?) -> an id for the case
CASES: dict[str, tuple[str, Handler, bool]] = {
    **{f"anthropic-{n}": ("anthropic", _recorded("anthropic", n), False) for n in (
        "response_text.json", "response_tool_use.json", "response_thinking.json", "response_refusal.json",
        "response_cache_usage.json", "response_json.json", "response_json_tool.json")},
    **{f"anthropic-{n}": ("anthropic", _recorded("anthropic", n), True) for n in (
        "stream_text.sse", "stream_thinking.sse", "stream_tool_use.sse", "stream_json_tool.sse",
        "stream_error.sse", "stream_truncated.sse")},
    **{f"anthropic-{n}-{s}": ("anthropic", _recorded("anthropic", n, status), s) for n, status in (
        ("error_rate_limit.json", 429), ("error_overloaded.json", 529), ("error_invalid_request.json", 400),
        ("error_api.json", 500), ("error_prompt_too_long.json", 400)) for s in (False, True)},
    **{f"gemini-{n}": ("gemini", _recorded("gemini", n), False) for n in (
        "response_text.json", "response_tool_call.json", "response_thinking.json", "response_parallel_calls.json",
        "response_safety.json", "response_prompt_blocked.json", "response_two_candidates.json",
        "response_usage_tools.json", "response_json.json")},
    **{f"gemini-{n}": ("gemini", _recorded("gemini", n), True) for n in (
        "stream_text.sse", "stream_thinking.sse", "stream_tool_call.sse", "stream_prompt_blocked.sse",
        "stream_error.sse", "stream_truncated.sse")},
    **{f"gemini-{n}-{s}": ("gemini", _recorded("gemini", n, status), s) for n, status in (
        ("error_resource_exhausted.json", 429), ("error_invalid_argument.json", 400), ("error_internal.json", 500),
        ("error_unavailable.json", 503)) for s in (False, True)},
    "openai-refusal": ("openai", _openai_json(completion(None, refusal="I can't help with that.")), False),
    "openai-reasoning-and-calls": ("openai", _openai_json(completion(
        "4", finish="tool_calls", tokens=TOKENS, reasoning_content="Thinking.", tool_calls=[_CALL])), False),
    "openai-length": ("openai", _openai_json(completion("cut", finish="length")), False),
    "openai-content-filter": ("openai", _openai_json(completion("", finish="content_filter")), False),
    "openai-stream-reasoning-and-calls": ("openai", _openai_stream(_REASONED), True),
    "openai-stream-refusal": ("openai", _openai_stream([
        chunk({"role": "assistant", "refusal": "No"}), chunk({"refusal": "."}, "stop"), usage_chunk(TOKENS)]), True),
    "openai-stream-length": ("openai", _openai_stream([chunk({"content": "cu"}), chunk({"content": "t"}, "length")]),
                             True),
    **{f"openai-error-{status}-{s}": ("openai", _openai_json(error("nope", code="x"), status), s)
       for status in (400, 429, 500) for s in (False, True)},
}


@pytest.fixture(params=sorted(CASES))
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Gateway, bool]]:
    provider, handler, stream = CASES[request.param]
    model, json_route, stream_route = PROVIDERS[provider]
    async with FakeUpstream() as up:
        up.route("POST", stream_route if stream else json_route, handler)
        base = up.url + "/v1" if provider == "openai" else up.url
        cfg = {
            "auth": {"master_key": "sk-m"},
            "providers": [{"name": "p", "type": provider, "base_url": base, "api_keys": ["k"]}],
            "models": [{"name": "m", "targets": [{"provider": "p", "model": model}], "retry": {"attempts": 1}}],
        }
        async with run_gateway(cfg) as gw:
            yield gw, stream


async def test_the_answer_to_each_upstream_answer_matches_the_schema(served: tuple[Gateway, bool]) -> None:
    gw, stream = served
    body = {"model": "m", "input": "Weather in Paris?", "tools": [TOOL], "stream": stream,
            "reasoning": {"effort": "low"}, "max_output_tokens": 4096}
    async with (
        aiohttp.ClientSession(headers={"authorization": "Bearer sk-m"}) as s,
        s.post(gw.url + "/v1/responses", json=body) as r,
    ):
        raw = await r.read()
        check_answer("POST", "/v1/responses", r.status, r.content_type, raw)
    if r.status >= 400:
        assert json.loads(raw)["error"]["message"]
        return
    assert r.status == 200
    final = response_events(raw)[-1]["response"] if stream else json.loads(raw)
    assert final["status"] in ("completed", "incomplete", "failed")
    if final["status"] == "failed":
        assert stream and final["error"]["message"]
    # a stored response reads back as it was sent, and its input items as a page
    if final["status"] != "failed":
        for path, name in ((f"/v1/responses/{final['id']}", "Response"),
                           (f"/v1/responses/{final['id']}/input_items", "ResponseItemList")):
            async with (
                aiohttp.ClientSession(headers={"authorization": "Bearer sk-m"}) as s,
                s.get(gw.url + path) as r,
            ):
                assert r.status == 200, (name, await r.text())
                check_answer("GET", path, r.status, r.content_type, await r.read())
