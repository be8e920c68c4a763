"""The official openai SDK streams tool calls from Anthropic and Gemini models through the gateway.

The upstreams replay the providers' recorded stream fixtures (tests/fixtures/<provider>/); the
client accumulates tool calls from the deltas exactly as users' code does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.gateway import run_gateway
from tests.support.replies import sse_events, streaming
from tests.support.upstream import FakeUpstream

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
    },
]


@pytest.mark.parametrize(
    ("ptype", "model", "fixture", "route"),
    [
        ("anthropic", "claude-sonnet-4-5", "anthropic/stream_tool_use.sse", "/v1/messages"),
        (
            "gemini",
            "gemini-2.5-flash",
            "gemini/stream_tool_call.sse",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        ),
    ],
)
async def test_openai_sdk_streams_tool_calls(ptype: str, model: str, fixture: str, route: str) -> None:
    async with FakeUpstream() as up:
        up.route("POST", route, streaming(sse_events((FIXTURES / fixture).read_bytes()), delay=0.005))
        cfg = {
            "providers": [{"name": "p", "type": ptype, "base_url": up.url, "api_keys": ["k"]}],
            "models": [{"name": "m", "targets": [{"provider": "p", "model": model}]}],
        }
        async with run_gateway(cfg) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            stream = await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "Weather and time in Paris?"}],
                tools=TOOLS,
                stream=True,
                stream_options={"include_usage": True},
            )
            calls: dict[int, dict[str, str]] = {}
            finish = None
            usage = None
            async for chunk in stream:
                if chunk.usage:
                    usage = chunk.usage
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    for tc in choice.delta.tool_calls or ():
                        slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                        if tc.id:
                            slot["id"] = tc.id
                        if tc.function and tc.function.name:
                            slot["name"] += tc.function.name
                        if tc.function and tc.function.arguments:
                            slot["arguments"] += tc.function.arguments
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert [json.loads(c["arguments"]) for c in calls.values()] == [{"city": "Paris"}, {"tz": "Europe/Paris"}]
    assert all(c["id"] for c in calls.values())
    assert finish == "tool_calls"
    assert usage is not None and usage.completion_tokens > 0
    sent = up.requests[-1].json()
    names = (
        [t["name"] for t in sent["tools"]]
        if ptype == "anthropic"
        else [d["name"] for t in sent["tools"] for d in t["functionDeclarations"]]
    )
    assert names == ["get_weather", "get_time"]
