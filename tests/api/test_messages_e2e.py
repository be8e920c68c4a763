"""End to end: the official anthropic SDK -> the gateway's /v1/messages -> a local OpenAI-compatible upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from aiohttp import web

from tests.support import openai_bodies
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import openai_sse
from tests.support.replies import json_or_stream, json_reply, sse_reply
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-test"
USAGE = {"prompt_tokens": 25, "completion_tokens": 7, "total_tokens": 32, "prompt_tokens_details": {"cached_tokens": 5}}


IDS: dict[str, Any] = {"id": "chatcmpl-e2e", "model": "gpt-4o-mini-2024-07-18"}


def completion(content: str, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return openai_bodies.completion(content, finish=finish, tokens=USAGE, **IDS, **message)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return openai_bodies.chunk(delta, finish, **IDS)


TEXT_STREAM = openai_bodies.text_stream(["Hel", "lo ", "there!"], tokens=USAGE, **IDS)

TOOL_CALL = {"id": "call_w1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}

TOOL_STREAM = [
    chunk({"role": "assistant", "content": "Checking."}),
    chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_w1", "type": "function", "function": {"name": "weather", "arguments": ""}}
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk({}, "tool_calls"),
    openai_bodies.usage_chunk(USAGE, **IDS),
]

WEATHER = {
    "name": "weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


async def upstream_handler(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    last = body["messages"][-1]
    if last["role"] == "tool":
        return json_reply(completion("It is 18C in Paris."))
    text = last["content"] if isinstance(last["content"], str) else ""
    if "rate limit me" in text:
        return json_reply({"error": {"message": "slow down", "type": "rate_limit_error"}}, 429, {"retry-after": "1"})
    if "break mid-stream" in text:
        # two chunks, then a malformed event: the stream cannot continue
        return await sse_reply(request, [*openai_sse(TEXT_STREAM[:2], done=False), b"data: {broken\n\n"], delay=0.05)
    if body.get("tools"):
        if body.get("stream"):
            return await sse_reply(request, openai_sse(TOOL_STREAM))
        return json_reply(completion("Checking.", "tool_calls", tool_calls=[TOOL_CALL]))
    if body.get("stream"):
        return await sse_reply(request, openai_sse(TEXT_STREAM))
    return json_reply(completion("Hello there!"))


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        upstream.route("POST", "/v1/chat/completions", upstream_handler)
        yield upstream


@pytest.fixture
async def gw(up: FakeUpstream) -> AsyncIterator[Gateway]:
    cfg = {
        "auth": {"master_key": MASTER},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [
            {"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}], "retry": {"attempts": 1}}
        ],
    }
    async with run_gateway(cfg) as gateway:
        yield gateway


@pytest.fixture
def client(gw: Gateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=MASTER, max_retries=0)


async def test_text_message(client: anthropic.AsyncAnthropic, up: FakeUpstream) -> None:
    msg = await client.messages.create(
        model="smart",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello"}],
        stop_sequences=["END"],
        metadata={"user_id": "u-42"},
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id == "msg_e2e"
    assert msg.model == "smart"
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello there!"
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (20, 7, 5)
    sent = up.requests[-1].json()
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    assert sent["max_tokens"] == 100 and sent["stop"] == ["END"] and sent["user"] == "u-42"
    assert up.requests[-1].headers["authorization"] == "Bearer sk-up"


async def test_stream_text_and_final_message(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(
        model="smart", max_tokens=100, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "Hello there!"
    assert len(pieces) == 3
    assert final.content[0].type == "text" and final.content[0].text == "Hello there!"
    assert final.stop_reason == "end_turn" and final.model == "smart"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (20, 7, 5)


async def test_tools_round_trip(client: anthropic.AsyncAnthropic, up: FakeUpstream) -> None:
    question = {"role": "user", "content": "Weather in Paris?"}
    first = await client.messages.create(
        model="smart", max_tokens=200, tools=[WEATHER], tool_choice={"type": "auto"}, messages=[question]
    )
    assert first.stop_reason == "tool_use"
    call = first.content[1]
    assert call.type == "tool_use" and call.name == "weather" and call.input == {"city": "Paris"}
    assert up.requests[-1].json()["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": WEATHER["description"],
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    second = await client.messages.create(
        model="smart",
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C, sunny"}]},
        ],
    )
    assert second.content[0].text == "It is 18C in Paris."  # type: ignore[union-attr]
    sent = up.requests[-1].json()["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": "call_w1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
        ],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_w1", "content": "18C, sunny"}


async def test_stream_tool_call(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(
        model="smart", max_tokens=200, tools=[WEATHER], messages=[{"role": "user", "content": "Weather in Paris?"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]


async def test_bad_request(client: anthropic.AsyncAnthropic, up: FakeUpstream) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model="smart",
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "text"}]}],  # type: ignore[typeddict-item]
        )
    assert info.value.type == "invalid_request_error"
    assert info.value.api_message == "messages.0.content.0.text: Field required"
    assert up.requests == []


async def test_unknown_model(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        await client.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.type == "not_found_error"
    assert "nope" in (info.value.api_message or "")


async def test_upstream_rate_limit(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(
            model="smart", max_tokens=10, messages=[{"role": "user", "content": "rate limit me"}]
        )
    assert info.value.type == "rate_limit_error"
    assert info.value.response.headers["retry-after"] == "1"


async def test_wrong_key(gw: Gateway) -> None:
    bad = anthropic.AsyncAnthropic(base_url=gw.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        await bad.messages.create(model="smart", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.type == "authentication_error"


async def test_x_api_key_and_raw_event_stream(gw: Gateway) -> None:
    """The classic header pair (x-api-key + 2023-06-01) works, and the wire events are Anthropic's."""
    headers = {"x-api-key": MASTER, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    body = {"model": "smart", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.url + "/v1/messages", data=orjson.dumps(body), headers=headers) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    names = [line[len("event: ") :] for line in raw.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_upstream_failing_mid_stream_gives_error_event(client: anthropic.AsyncAnthropic) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(
            model="smart", max_tokens=50, messages=[{"role": "user", "content": "break mid-stream"}]
        ) as stream:
            async for text in stream.text_stream:
                seen.append(text)
    assert seen == ["Hel"]  # what arrived before the failure reached the caller
    assert isinstance(info.value.body, dict)
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "api_error"
    assert "protocol" in info.value.body["error"]["message"]


# -- Anthropic in, Anthropic out (through the Anthropic adapter) -----------------------------------

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"


anthropic_upstream = json_or_stream(
    orjson.loads((FIXTURES / "response_thinking.json").read_bytes()), [(FIXTURES / "stream_thinking.sse").read_bytes()]
)


async def test_anthropic_upstream_round_trip() -> None:
    """Thinking (with its signature) and usage survive Anthropic -> canonical -> Anthropic."""
    async with FakeUpstream() as upstream:
        upstream.route("POST", "/v1/messages", anthropic_upstream)
        cfg = {
            "providers": [{"name": "claude", "type": "anthropic", "base_url": upstream.url, "api_keys": ["sk-ant"]}],
            "models": [{"name": "smart", "targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}],
        }
        async with run_gateway(cfg) as gateway:
            client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="x", max_retries=0)
            thinking = {"type": "enabled", "budget_tokens": 2048}
            question = {"role": "user", "content": "27 * 453?"}
            msg = await client.messages.create(model="smart", max_tokens=4096, thinking=thinking, messages=[question])
            assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text"]
            assert msg.content[0].signature.startswith("EqQB")  # type: ignore[union-attr]
            assert msg.usage.output_tokens == 180 and msg.usage.input_tokens == 46
            sent = upstream.requests[-1].json()
            assert sent["thinking"] == thinking and sent["model"] == "claude-sonnet-4-5"

            # the signed thinking blocks are replayed to the upstream on the next turn
            history = [b.model_dump(exclude_none=True) for b in msg.content]
            await client.messages.create(
                model="smart",
                max_tokens=4096,
                thinking=thinking,
                messages=[question, {"role": "assistant", "content": history}, {"role": "user", "content": "thanks"}],
            )
            replayed = upstream.requests[-1].json()["messages"][1]["content"]
            assert [b["type"] for b in replayed[:2]] == ["thinking", "redacted_thinking"]
            assert replayed[0]["signature"] == history[0]["signature"]

            async with client.messages.stream(
                model="smart", max_tokens=4096, thinking=thinking, messages=[question]
            ) as stream:
                final = await stream.get_final_message()
            assert [b.type for b in final.content] == ["thinking", "text"]
            assert final.content[0].thinking == "27 * 453 = 12231."  # type: ignore[union-attr]
            assert final.content[1].text == "27 \u00d7 453 = 12,231."  # type: ignore[union-attr]
            assert final.usage.output_tokens == 180 and final.usage.cache_read_input_tokens == 100
