"""Google Gemini (Generative Language API)."""

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
    WEATHER_SCHEMA,
    Ctx,
    Profile,
    Reply,
)

# The thought signature in response_tool_call.json: it must come back with the tool result.
SIGNATURE = "CiQB0e2Kb3dRh+BYdbZvmulSN2Pwwc75DfBvc6Pzt4kgOqHIsPcSeQHR7Y"


def provider(url: str, variant: str) -> dict[str, Any]:
    return {"type": "gemini", "base_url": url, "api_keys": [API_KEY]}


def path(model: str, stream: bool) -> str:
    return f"/v1beta/models/{model}:" + ("streamGenerateContent" if stream else "generateContent")


def simple_chat(ctx: Ctx) -> None:
    b = ctx.body
    assert b["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
    assert b["generationConfig"] == {"maxOutputTokens": MAX_TOKENS}
    assert set(b) == {"contents", "generationConfig"}  # no model, user or other OpenAI-only fields
    assert ctx.request.query == {}


def system_prompt(ctx: Ctx) -> None:
    assert ctx.body["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert ctx.body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]


def multi_turn(ctx: Ctx) -> None:
    contents = ctx.body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [{"text": "Nice to meet you, Ada."}]


def tool_call(ctx: Ctx) -> None:
    assert ctx.body["tools"] == [{"functionDeclarations": [
        {"name": TOOL_NAME, "description": "Current weather for a city", "parametersJsonSchema": WEATHER_SCHEMA}]}]
    assert ctx.body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


def tool_result(ctx: Ctx) -> None:
    model_turn, user_turn = ctx.body["contents"][-2:]
    assert model_turn == {"role": "model", "parts": [
        {"functionCall": {"name": TOOL_NAME, "args": TOOL_ARGS}, "thoughtSignature": SIGNATURE}]}
    assert user_turn == {"role": "user", "parts": [
        {"functionResponse": {"name": TOOL_NAME, "response": {"content": TOOL_RESULT}}}]}


def json_schema(ctx: Ctx) -> None:
    config = ctx.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == JSON_SCHEMA


def image_input(ctx: Ctx) -> None:
    assert ctx.body["contents"][0]["parts"] == [
        {"text": "What is in this image?"},
        {"inlineData": {"mimeType": "image/png", "data": IMAGE_B64}},
    ]


def streaming(ctx: Ctx) -> None:
    assert ctx.request.query == {"alt": "sse"}
    assert "stream" not in ctx.body


PROFILE = Profile(
    name="gemini",
    fixtures=FIXTURES / "gemini",
    model="gemini-2.5-flash",
    provider=provider,
    path=path,
    auth=lambda variant: ("x-goog-api-key", API_KEY),
    replies={
        "text": Reply("response_text.json"),
        "tool_call": Reply("response_tool_call.json"),
        "json": Reply("response_json.json"),
        "stream": Reply("stream_text.sse"),
        "error_400": Reply("error_invalid_argument.json", 400),
        "error_401": Reply("error_api_key_invalid.json", 400),  # Gemini answers a bad key with 400
        "error_429": Reply("error_resource_exhausted.json", 429),  # retry delay in the body: RetryInfo 34s
        "error_500": Reply("error_internal.json", 500),
        "error_overloaded": Reply("error_unavailable.json", 503),
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
    retry_after=34,
)
