"""Amazon Bedrock (Converse / ConverseStream), authenticated with a Bedrock API key (Bearer).

SigV4 signing is covered end to end in tests/adapters/test_bedrock.py (a fake Bedrock that checks
the signature with botocore); the suite uses the API-key form so the auth header is predictable.
"""

from __future__ import annotations

import json
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

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
_ERR = "http://internal.amazon.com/coral/com.amazon.bedrock/"


def provider(url: str, variant: str) -> dict[str, Any]:
    return {"type": "bedrock", "base_url": url, "region": "us-east-1", "api_keys": [API_KEY]}


def path(model: str, stream: bool) -> str:
    return f"/model/{model}/converse-stream" if stream else f"/model/{model}/converse"


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


def simple_chat(ctx: Ctx) -> None:
    b = ctx.body
    assert b["messages"] == [_user("Say hello")]
    assert b["inferenceConfig"] == {"maxTokens": MAX_TOKENS}
    assert "system" not in b and "toolConfig" not in b
    assert "modelId" not in b and "model" not in b  # the model is in the URL


def system_prompt(ctx: Ctx) -> None:
    assert ctx.body["system"] == [{"text": SYSTEM}]
    assert ctx.body["messages"] == [_user("Say hello")]


def multi_turn(ctx: Ctx) -> None:
    assert ctx.body["messages"] == [
        _user("My name is Ada."),
        {"role": "assistant", "content": [{"text": "Nice to meet you, Ada."}]},
        _user("What is my name?"),
    ]


def tool_call(ctx: Ctx) -> None:
    assert ctx.body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": TOOL_NAME, "description": "Current weather for a city",
                                "inputSchema": {"json": WEATHER_SCHEMA}}}],
        "toolChoice": {"auto": {}},
    }


def tool_result(ctx: Ctx) -> None:
    assistant, result = ctx.body["messages"][-2:]
    assert assistant == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": ctx.tool_call_id, "name": TOOL_NAME, "input": TOOL_ARGS}}]}
    assert result == {"role": "user", "content": [
        {"toolResult": {"toolUseId": ctx.tool_call_id, "content": [{"text": TOOL_RESULT}]}}]}
    assert ctx.body["toolConfig"]["tools"][0]["toolSpec"]["name"] == TOOL_NAME


def json_schema(ctx: Ctx) -> None:
    fmt = ctx.body["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema"
    assert fmt["structure"]["jsonSchema"]["name"] == "weather"
    assert json.loads(fmt["structure"]["jsonSchema"]["schema"]) == JSON_SCHEMA


def image_input(ctx: Ctx) -> None:
    assert ctx.body["messages"][0]["content"] == [
        {"text": "What is in this image?"},
        {"image": {"format": "png", "source": {"bytes": IMAGE_B64}}},
    ]


def streaming(ctx: Ctx) -> None:
    assert ctx.request.headers["accept"] == "application/vnd.amazon.eventstream"
    assert "stream" not in ctx.body  # the operation (converse-stream) says it
    assert ctx.body["messages"] == [_user("Say hello")]


def _error(file: str, status: int, kind: str, **headers: str) -> Reply:
    return Reply(file, status, {"x-amzn-errortype": f"{kind}:{_ERR}", **headers})


PROFILE = Profile(
    name="bedrock",
    fixtures=FIXTURES / "bedrock" / "conformance",
    model=MODEL,
    provider=provider,
    path=path,
    auth=lambda variant: ("authorization", "Bearer " + API_KEY),
    replies={
        "text": Reply("converse_text.json"),
        "tool_call": Reply("converse_tool_call.json"),
        "json": Reply("converse_json.json"),
        "stream": Reply("converse_stream.bin"),  # binary AWS event stream, sent whole
        "error_400": _error("error_400.json", 400, "ValidationException"),
        "error_401": _error("error_401.json", 403, "AccessDeniedException"),
        "error_429": _error("error_429.json", 429, "ThrottlingException", **{"retry-after": "17"}),
        "error_500": _error("error_500.json", 500, "InternalServerException"),
        "error_overloaded": _error("error_503_overloaded.json", 503, "ServiceUnavailableException"),
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
