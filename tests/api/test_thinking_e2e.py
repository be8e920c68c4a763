"""Signed thinking end to end: the official SDKs -> Fluxway -> upstreams (Anthropic Messages, Bedrock
Converse) that think with signatures and refuse a tool-result follow-up whose assistant turn lacks
the exact blocks they issued (tests/support/thinking_upstreams.py). Every ingress, streamed and not:
/v1/messages (the blocks and their signature_delta), chat completions (``thinking_blocks``) and the
Responses API (a reasoning item's ``encrypted_content``, sent back or replayed from the store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import orjson
import pytest

from tests.support.gateway import Gateway, run_gateway
from tests.support.responses_schema import checked_http_client
from tests.support.thinking_upstreams import (
    ANSWER,
    ANTHROPIC_BLOCKS,
    BEDROCK_BLOCKS,
    BEDROCK_MODEL,
    REDACTED,
    SIGNATURE,
    THOUGHT,
    WEATHER,
    routes,
)
from tests.support.upstream import FakeUpstream

KINDS = ("anthropic", "bedrock")
THINKING: Any = {"type": "enabled", "budget_tokens": 2048}
USER: Any = {"role": "user", "content": "Weather in Paris?"}
CHAT_TOOL: Any = {"type": "function", "function": {"name": "get_weather", "description": WEATHER["description"],
                                                   "parameters": WEATHER["input_schema"]}}
RESPONSES_TOOL: Any = {"type": "function", "name": "get_weather", "description": WEATHER["description"],
                       "parameters": WEATHER["input_schema"]}


@pytest.fixture(params=KINDS)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Gateway, FakeUpstream]]:
    kind: str = request.param
    provider: dict[str, Any] = {"name": "p", "type": kind, "base_url": "", "api_keys": ["k"]}
    if kind == "bedrock":
        provider["region"] = "us-west-2"
    async with FakeUpstream() as up:
        for path, handler in routes(kind):
            up.route("POST", path, handler)
        provider["base_url"] = up.url
        model = BEDROCK_MODEL if kind == "bedrock" else "claude-sonnet-4-5"
        cfg = {
            "auth": {"master_key": "sk-m"},
            "providers": [provider],
            "models": [{"name": "m", "targets": [{"provider": "p", "model": model}], "retry": {"attempts": 1}}],
        }
        async with run_gateway(cfg) as gw:
            yield kind, gw, up


def _replayed(kind: str, up: FakeUpstream) -> list[Any]:
    """The head of the last assistant turn the gateway sent upstream in the last request."""
    sent = up.requests[-1].json()
    [*_, last] = [m for m in sent["messages"] if m["role"] == "assistant"]
    return list(last["content"][:2])


def _blocks(kind: str) -> list[Any]:
    return ANTHROPIC_BLOCKS if kind == "anthropic" else BEDROCK_BLOCKS


# -- /v1/messages ---------------------------------------------------------------------------------


def _anthropic(gw: Gateway) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key="sk-m", max_retries=0)


def _follow_up(first: Any) -> list[Any]:
    [use] = [b for b in first.content if b.type == "tool_use"]
    return [USER, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]}]


def _check_first(first: Any) -> None:
    assert [b.type for b in first.content] == ["thinking", "redacted_thinking", "tool_use"]
    assert (first.content[0].thinking, first.content[0].signature) == ("".join(THOUGHT), SIGNATURE)
    assert first.content[1].data == REDACTED
    assert first.stop_reason == "tool_use"


async def test_messages_stream_then_tool_result(served: tuple[str, Gateway, FakeUpstream]) -> None:
    kind, gw, up = served
    client = _anthropic(gw)
    async with client.messages.stream(model="m", max_tokens=4096, thinking=THINKING, tools=[WEATHER],
                                      messages=[USER]) as stream:
        first = await stream.get_final_message()
    _check_first(first)
    second = await client.messages.create(model="m", max_tokens=4096, thinking=THINKING, tools=[WEATHER],
                                          messages=_follow_up(first))
    assert second.content[0].type == "text" and second.content[0].text == ANSWER
    assert _replayed(kind, up) == _blocks(kind)
    async with client.messages.stream(model="m", max_tokens=4096, thinking=THINKING, tools=[WEATHER],
                                      messages=_follow_up(first)) as stream:
        assert await stream.get_final_text() == ANSWER


async def test_messages_stream_wire(served: tuple[str, Gateway, FakeUpstream]) -> None:
    """On the wire: the signature arrives as a signature_delta before the thinking block closes,
    never empty; the redacted block is a content block of its own."""
    _, gw, _ = served
    body = {"model": "m", "max_tokens": 4096, "thinking": THINKING, "tools": [WEATHER], "messages": [USER],
            "stream": True}
    async with httpx.AsyncClient() as http:
        resp = await http.post(gw.url + "/v1/messages", json=body, headers={"x-api-key": "sk-m"})
    events = [orjson.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]
    signatures = [e for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"]
    assert [s["delta"]["signature"] for s in signatures] == [SIGNATURE]
    after = events[events.index(signatures[0]) + 1]
    assert after == {"type": "content_block_stop", "index": signatures[0]["index"]}
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "redacted_thinking", "tool_use"]
    assert starts[1] == {"type": "redacted_thinking", "data": REDACTED}


async def test_messages_non_stream_then_streamed_follow_up(served: tuple[str, Gateway, FakeUpstream]) -> None:
    kind, gw, up = served
    client = _anthropic(gw)
    first = await client.messages.create(model="m", max_tokens=4096, thinking=THINKING, tools=[WEATHER],
                                         messages=[USER])
    _check_first(first)
    async with client.messages.stream(model="m", max_tokens=4096, thinking=THINKING, tools=[WEATHER],
                                      messages=_follow_up(first)) as stream:
        assert await stream.get_final_text() == ANSWER
    assert _replayed(kind, up) == _blocks(kind)


async def test_messages_modified_thinking_is_refused_upstream(served: tuple[str, Gateway, FakeUpstream]) -> None:
    """The mock is strict: a turn without the signed blocks fails (what the gateway used to send)."""
    _, gw, _ = served
    client = _anthropic(gw)
    first = await client.messages.create(model="m", max_tokens=4096, thinking=THINKING, tools=[WEATHER],
                                         messages=[USER])
    history = _follow_up(first)
    history[1]["content"] = history[1]["content"][2:]
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model="m", max_tokens=4096, thinking=THINKING, tools=[WEATHER], messages=history)


# -- chat completions -----------------------------------------------------------------------------


def _openai(gw: Gateway, checked: bool = False) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-m", max_retries=0,
                              http_client=checked_http_client() if checked else None)


async def test_chat_stream_then_follow_up(served: tuple[str, Gateway, FakeUpstream]) -> None:
    kind, gw, up = served
    client = _openai(gw)
    stream = await client.chat.completions.create(model="m", messages=[USER], tools=[CHAT_TOOL],
                                                  reasoning_effort="low", stream=True)
    blocks: list[Any] = []
    reasoning, call_id = "", ""
    async for chunk in stream:
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            blocks += extra.get("thinking_blocks") or []
            reasoning += extra.get("reasoning_content") or ""
            for call in choice.delta.tool_calls or ():
                call_id = call.id or call_id
    assert reasoning == "".join(THOUGHT)
    assert blocks == [{**ANTHROPIC_BLOCKS[0], "index": 0}, {**ANTHROPIC_BLOCKS[1], "index": 1}]
    assistant: Any = {"role": "assistant", "content": None, "thinking_blocks": blocks, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    history: Any = [USER, assistant, {"role": "tool", "tool_call_id": call_id, "content": "18C"}]
    follow = await client.chat.completions.create(model="m", messages=history, tools=[CHAT_TOOL],
                                                  reasoning_effort="low")
    assert follow.choices[0].message.content == ANSWER
    assert _replayed(kind, up) == _blocks(kind)


async def test_chat_non_stream_carries_blocks(served: tuple[str, Gateway, FakeUpstream]) -> None:
    _, gw, _ = served
    resp = await _openai(gw).chat.completions.create(model="m", messages=[USER], tools=[CHAT_TOOL],
                                                     reasoning_effort="low")
    assert (resp.choices[0].message.model_extra or {})["thinking_blocks"] == ANTHROPIC_BLOCKS


# -- the Responses API ----------------------------------------------------------------------------


def _reasoning_of(resp: Any) -> Any:
    [item] = [o for o in resp.output if o.type == "reasoning"]
    return item


def _call_output(resp: Any) -> Any:
    [call] = [o for o in resp.output if o.type == "function_call"]
    return {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}


async def test_responses_previous_response_id(served: tuple[str, Gateway, FakeUpstream]) -> None:
    kind, gw, up = served
    client = _openai(gw, checked=True)
    first = await client.responses.create(model="m", input="Weather in Paris?", tools=[RESPONSES_TOOL],
                                          reasoning={"effort": "low"})
    item = _reasoning_of(first)
    assert item.encrypted_content and item.encrypted_content.startswith("fxthink1:")
    assert item.content and item.content[0].text == "".join(THOUGHT)
    second = await client.responses.create(model="m", previous_response_id=first.id, tools=[RESPONSES_TOOL],
                                           reasoning={"effort": "low"}, input=[_call_output(first)])
    assert second.output_text == ANSWER
    assert _replayed(kind, up) == _blocks(kind)


async def test_responses_stream_previous_response_id(served: tuple[str, Gateway, FakeUpstream]) -> None:
    kind, gw, up = served
    client = _openai(gw, checked=True)
    done: list[Any] = []
    async with client.responses.stream(model="m", input="Weather in Paris?", tools=[RESPONSES_TOOL],
                                       reasoning={"effort": "low"}) as stream:
        async for event in stream:
            if event.type == "response.output_item.done" and event.item.type == "reasoning":
                done.append(event.item)
        first = await stream.get_final_response()
    [item] = done
    assert item.encrypted_content and item.encrypted_content == _reasoning_of(first).encrypted_content
    async with client.responses.stream(model="m", previous_response_id=first.id, tools=[RESPONSES_TOOL],
                                       reasoning={"effort": "low"}, input=[_call_output(first)]) as stream:
        second = await stream.get_final_response()
    assert second.output_text == ANSWER
    assert _replayed(kind, up) == _blocks(kind)


@pytest.mark.parametrize("streamed", [False, True])
async def test_responses_input_items_carry_encrypted_content(
    served: tuple[str, Gateway, FakeUpstream], streamed: bool
) -> None:
    kind, gw, up = served
    client = _openai(gw, checked=True)
    if streamed:
        async with client.responses.stream(model="m", input="Weather in Paris?", tools=[RESPONSES_TOOL],
                                           reasoning={"effort": "low"}, store=False) as stream:
            first = await stream.get_final_response()
    else:
        first = await client.responses.create(model="m", input="Weather in Paris?", tools=[RESPONSES_TOOL],
                                              reasoning={"effort": "low"}, store=False)
    items: Any = [USER, *[o.model_dump(exclude_none=True) for o in first.output], _call_output(first)]
    second = await client.responses.create(model="m", input=items, tools=[RESPONSES_TOOL],
                                           reasoning={"effort": "low"}, store=False)
    assert second.output_text == ANSWER
    assert _replayed(kind, up) == _blocks(kind)


async def test_responses_foreign_encrypted_content_is_ignored(served: tuple[str, Gateway, FakeUpstream]) -> None:
    _, gw, up = served
    client = _openai(gw, checked=True)
    foreign = ["gAAAAABo-openai-encrypted-reasoning", "fxthink1:%%%not base64", "fxthink1:bm90IGpzb24",
               "fxthink1:eyJhIjoxfQ", "fxthink1:é"]
    items: Any = [USER, *[{"type": "reasoning", "id": f"rs_{i}", "summary": [], "encrypted_content": value}
                          for i, value in enumerate(foreign)],
                  {"role": "assistant", "content": "Let me think."}, {"role": "user", "content": "Well?"}]
    resp = await client.responses.create(model="m", input=items, tools=[RESPONSES_TOOL], reasoning={"effort": "low"})
    assert resp.status == "completed"
    sent = up.requests[-1].json()
    text = orjson.dumps(sent["messages"]).decode()
    assert "reasoningContent" not in text and '"thinking"' not in text
