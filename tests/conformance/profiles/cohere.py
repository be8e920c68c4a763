"""Cohere v2 chat (``POST /v2/chat``, Bearer)."""

from __future__ import annotations

import json
from typing import Any

from tests.conformance.profile import (
    API_KEY,
    FIXTURES,
    IMAGE_URI,
    JSON_SCHEMA,
    MAX_TOKENS,
    SYSTEM,
    TOOL_ARGS,
    TOOL_NAME,
    TOOL_RESULT,
    WEATHER_SCHEMA,
    Ctx,
    Profile,
    Reply,
)


def provider(url: str, variant: str) -> dict[str, Any]:
    return {"type": "cohere", "base_url": url, "api_keys": [API_KEY]}


def simple_chat(ctx: Ctx) -> None:
    b = ctx.body
    assert b["model"] == ctx.model
    assert b["messages"] == [{"role": "user", "content": "Say hello"}]
    assert b["max_tokens"] == MAX_TOKENS
    assert "user" not in b and "max_completion_tokens" not in b and "stream" not in b


def system_prompt(ctx: Ctx) -> None:
    assert ctx.body["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Say hello"}]


def multi_turn(ctx: Ctx) -> None:
    assert ctx.body["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


def tool_call(ctx: Ctx) -> None:
    assert ctx.body["tools"] == [{"type": "function", "function": {
        "name": TOOL_NAME, "description": "Current weather for a city", "parameters": WEATHER_SCHEMA}}]
    assert "tool_choice" not in ctx.body  # auto is Cohere's default


def tool_result(ctx: Ctx) -> None:
    assistant, tool = ctx.body["messages"][-2:]
    [call] = assistant["tool_calls"]
    assert call["id"] == ctx.tool_call_id
    assert call["function"]["name"] == TOOL_NAME
    assert json.loads(call["function"]["arguments"]) == TOOL_ARGS
    assert tool == {"role": "tool", "tool_call_id": ctx.tool_call_id, "content": TOOL_RESULT}


def json_schema(ctx: Ctx) -> None:
    assert ctx.body["response_format"] == {"type": "json_object", "json_schema": JSON_SCHEMA}


def image_input(ctx: Ctx) -> None:
    assert ctx.body["messages"][0]["content"] == [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": IMAGE_URI}},
    ]


def streaming(ctx: Ctx) -> None:
    assert ctx.body["stream"] is True
    assert "stream_options" not in ctx.body


PROFILE = Profile(
    name="cohere",
    fixtures=FIXTURES / "cohere" / "conformance",
    model="command-a-03-2025",
    provider=provider,
    path=lambda model, stream: "/v2/chat",
    auth=lambda variant: ("authorization", "Bearer " + API_KEY),
    replies={
        "text": Reply("chat_text.json"),
        "tool_call": Reply("chat_tool_call.json"),
        "json": Reply("chat_json.json"),
        "stream": Reply("chat_stream.sse"),
        "error_400": Reply("error_400.json", 400),
        "error_401": Reply("error_401.json", 401),
        "error_429": Reply("error_429.json", 429, {"retry-after": "17"}),
        "error_500": Reply("error_500.json", 500),
        "error_overloaded": Reply("error_503_overloaded.json", 503),
    },
    checks={
        "simple_chat": simple_chat,
        "system_prompt": system_prompt,
        "multi_turn": multi_turn,
        "tool_call": tool_call,
        "tool_result": tool_result,
        "json_schema": json_schema,
        "image_input": image_input,
        "streaming": streaming,
    },
    retry_after=17,
)
