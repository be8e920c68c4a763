"""The Responses API served by Anthropic and Gemini models: the openai SDK -> Fluxway -> each
provider's own wire format (mocks replaying the recorded fixtures under tests/fixtures/). Every
answer the SDK receives, JSON or event stream, is checked on the wire against OpenAI's published
OpenAPI document (tests/support/responses_schema.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.support.gateway import Gateway, run_gateway
from tests.support.replies import json_reply, sse_events, streaming
from tests.support.responses_schema import checked_http_client
from tests.support.upstream import FakeUpstream

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOOL: Any = {"type": "function", "name": "get_weather", "description": "Weather in a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
GREETING = "Hello! How can I help you today?"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if body.get("stream"):
        return await streaming(sse_events((FIXTURES / "anthropic/stream_text.sse").read_bytes()))(request)
    answered = any(isinstance(m["content"], list) and any(b.get("type") == "tool_result" for b in m["content"])
                   for m in body["messages"])
    if answered:
        reply = _fixture("anthropic/response_text.json")
        reply["content"][0]["text"] = "It is 18C in Paris."
        return json_reply(reply)
    return json_reply(_fixture("anthropic/response_tool_use.json" if body.get("tools") else
                               "anthropic/response_text.json"))


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    answered = any("functionResponse" in p for c in body["contents"] for p in c["parts"])
    if answered:
        reply = _fixture("gemini/response_text.json")
        reply["candidates"][0]["content"]["parts"][0]["text"] = "It is 18C in Paris."
        return json_reply(reply)
    return json_reply(_fixture("gemini/response_tool_call.json" if body.get("tools") else "gemini/response_text.json"))


PROVIDERS = {
    "anthropic": ("claude-sonnet-4-5", [("/v1/messages", anthropic_messages)]),
    "gemini": ("gemini-2.5-flash", [
        ("/v1beta/models/gemini-2.5-flash:generateContent", gemini_generate),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent",
         streaming(sse_events((FIXTURES / "gemini/stream_text.sse").read_bytes()))),
    ]),
}


@pytest.fixture(params=sorted(PROVIDERS))
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Gateway, FakeUpstream]]:
    ptype: str = request.param
    model, routes = PROVIDERS[ptype]
    async with FakeUpstream() as up:
        for path, handler in routes:
            up.route("POST", path, handler)
        cfg = {
            "auth": {"master_key": "sk-m"},
            "providers": [{"name": "p", "type": ptype, "base_url": up.url, "api_keys": ["k"]}],
            "models": [{"name": "m", "targets": [{"provider": "p", "model": model}], "retry": {"attempts": 1}}],
        }
        async with run_gateway(cfg) as gw:
            yield ptype, gw, up


def _client(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0, http_client=checked_http_client())


async def test_create_and_stream(served: tuple[str, Gateway, FakeUpstream]) -> None:
    ptype, gw, up = served
    client = _client(gw)
    resp = await client.responses.create(model="m", input="Hi", instructions="Be kind.")
    assert resp.output_text == GREETING and resp.status == "completed"
    assert resp.usage is not None and (resp.usage.input_tokens, resp.usage.output_tokens) == (12, 9)
    sent = up.requests[-1].json()
    if ptype == "anthropic":
        assert sent["system"] in ("Be kind.", [{"type": "text", "text": "Be kind."}])
    else:
        assert sent["systemInstruction"]["parts"] == [{"text": "Be kind."}]
    async with client.responses.stream(model="m", input="Hi") as stream:
        final = await stream.get_final_response()
    assert final.output_text == GREETING
    assert final.usage is not None and final.usage.output_tokens > 0
    assert (await client.responses.retrieve(final.id)).output_text == GREETING


async def test_tool_round_trip(served: tuple[str, Gateway, FakeUpstream]) -> None:
    ptype, gw, up = served
    client = _client(gw)
    first = await client.responses.create(model="m", input="Weather in Paris?", tools=[TOOL])
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = await client.responses.create(
        model="m", previous_response_id=first.id, tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
    )
    assert second.output_text == "It is 18C in Paris."
    sent = up.requests[-1].json()
    if ptype == "anthropic":
        assert sent["messages"][1]["content"][-1]["type"] == "tool_use"
        assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": call.call_id,
                                                     "content": "18C"}
    else:
        parts = [p for c in sent["contents"] for p in c["parts"]]
        assert any(p.get("functionCall", {}).get("name") == "get_weather" for p in parts)
        assert any(p.get("functionResponse", {}).get("name") == "get_weather" for p in parts)


async def test_anthropic_thinking_streams_as_a_reasoning_item() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/messages",
                 streaming(sse_events((FIXTURES / "anthropic/stream_thinking.sse").read_bytes())))
        cfg = {
            "auth": {"master_key": "sk-m"},
            "providers": [{"name": "p", "type": "anthropic", "base_url": up.url, "api_keys": ["k"]}],
            "models": [{"name": "m", "targets": [{"provider": "p", "model": "claude-sonnet-4-5"}]}],
        }
        async with (
            run_gateway(cfg) as gw,
            _client(gw).responses.stream(model="m", input="27 * 453?", reasoning={"effort": "low"},
                                         max_output_tokens=4096) as stream,
        ):
            final = await stream.get_final_response()
    assert [o.type for o in final.output] == ["reasoning", "message"]
    assert final.output_text == "27 \u00d7 453 = 12,231."
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert reasoning.content[0].text == "27 * 453 = 12231."
    assert up.requests[-1].json()["thinking"]["type"] == "enabled"
