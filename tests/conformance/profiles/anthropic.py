"""Anthropic Messages API."""

from __future__ import annotations

from typing import Any

from tests.conformance.profile import (
    API_KEY,
    FIXTURES,
    IMAGE_B64,
    JSON_SCHEMA,
    MAX_TOKENS,
    SYSTEM,
    TOOL_ARGS,
    TOOL_NAME,
    TOOL_RESULT,
    USER,
    WEATHER_SCHEMA,
    Ctx,
    Profile,
    Reply,
    text_of,
)


def provider(url: str, variant: str) -> dict[str, Any]:
    return {"type": "anthropic", "base_url": url, "api_keys": [API_KEY]}


def simple_chat(ctx: Ctx) -> None:
    b = ctx.body
    assert ctx.request.headers["anthropic-version"] == "2023-06-01"
    assert b["model"] == ctx.model
    assert b["messages"] == [{"role": "user", "content": "Say hello"}]
    assert b["max_tokens"] == MAX_TOKENS
    assert b["metadata"] == {"user_id": USER}
    assert "system" not in b and "stream" not in b


def system_prompt(ctx: Ctx) -> None:
    assert ctx.body["system"] == SYSTEM
    assert ctx.body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert ctx.body["max_tokens"] > 0  # required by Anthropic, defaulted when the client gives none


def multi_turn(ctx: Ctx) -> None:
    msgs = ctx.body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert text_of(msgs[1]["content"]) == "Nice to meet you, Ada."


def tool_call(ctx: Ctx) -> None:
    assert ctx.body["tools"] == [
        {"name": TOOL_NAME, "description": "Current weather for a city", "input_schema": WEATHER_SCHEMA}
    ]
    assert ctx.body["tool_choice"] == {"type": "auto"}


def tool_result(ctx: Ctx) -> None:
    assistant, user = ctx.body["messages"][-2:]
    assert assistant["role"] == "assistant"
    uses = [b for b in assistant["content"] if b["type"] == "tool_use"]
    assert uses == [{"type": "tool_use", "id": ctx.tool_call_id, "name": TOOL_NAME, "input": TOOL_ARGS}]
    assert user == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": ctx.tool_call_id, "content": TOOL_RESULT}]}
    assert ctx.body["tools"][0]["name"] == TOOL_NAME


def json_schema(ctx: Ctx) -> None:
    assert ctx.body["output_config"] == {"format": {"type": "json_schema", "schema": JSON_SCHEMA}}
    assert "response_format" not in ctx.body


def image_input(ctx: Ctx) -> None:
    assert ctx.body["messages"][0]["content"] == [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE_B64}},
    ]


def streaming(ctx: Ctx) -> None:
    assert ctx.body["stream"] is True
    assert "stream_options" not in ctx.body
    assert ctx.request.headers["accept"] == "text/event-stream"


PROFILE = Profile(
    name="anthropic",
    fixtures=FIXTURES / "anthropic",
    model="claude-sonnet-4-5",
    provider=provider,
    path=lambda model, stream: "/v1/messages",
    auth=lambda variant: ("x-api-key", API_KEY),
    replies={
        "text": Reply("response_text.json"),
        "tool_call": Reply("response_tool_use.json"),
        "json": Reply("response_json.json"),
        "stream": Reply("stream_text.sse"),
        "error_400": Reply("error_invalid_request.json", 400),
        "error_401": Reply("error_authentication.json", 401),
        "error_429": Reply("error_rate_limit.json", 429, {"retry-after": "17"}),
        "error_500": Reply("error_api.json", 500),
        "error_overloaded": Reply("error_overloaded.json", 529),
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
