"""OpenAI itself and every OpenAI-compatible preset: one wire format, a few dialects.

The dialects below are written out by hand from each vendor's API reference (not read from the
preset table), so a wrong row in ``presets.py`` fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conformance.profile import (
    API_KEY,
    IMAGE_URI,
    JSON_SCHEMA,
    MAX_TOKENS,
    SYSTEM,
    TOOL_NAME,
    TOOL_RESULT,
    USER,
    WEATHER_SCHEMA,
    Ctx,
    Profile,
    Reply,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"


def provider(url: str, variant: str) -> dict[str, Any]:
    return {"type": variant, "base_url": url + "/v1", "api_keys": [API_KEY]}


VARIANTS = (
    "openai", "openai-compatible", "mistral", "groq", "together", "deepseek", "xai", "fireworks",
    "openrouter", "perplexity", "cerebras", "ollama", "vllm", "lmstudio", "llamacpp",
    # issue 12 (the API reference of each: docs/providers.md "Sources of the preset rows")
    "nvidia", "huggingface", "cloudflare", "databricks", "sambanova", "nebius", "novita", "hyperbolic",
    "baseten", "deepinfra", "moonshot", "qwen", "zhipu", "zai", "minimax", "upstage", "ai21", "nscale",
    "scaleway", "ovhcloud", "github", "litellm",
)
# Vendors that take max_tokens, not max_completion_tokens.
MAX_TOKENS_ONLY = frozenset({"mistral", "deepseek", "fireworks", "perplexity", "sambanova", "novita", "hyperbolic",
                             "moonshot", "qwen", "zhipu", "zai", "upstage", "ai21"})
# Vendors that reject the `user` field.
NO_USER = frozenset({"mistral", "deepseek", "perplexity", "cloudflare", "databricks", "sambanova", "hyperbolic",
                     "moonshot", "qwen", "minimax", "upstage", "ai21"})
# Vendors without function calling: tools are not sent.
NO_TOOLS = frozenset({"perplexity"})
# Vendors whose chat API documents no tool_choice (MiniMax): tools go, tool_choice does not.
NO_TOOL_CHOICE = frozenset({"minimax"})
# Vendors without response_format (MiniMax): the request goes without it.
NO_RESPONSE_FORMAT = frozenset({"minimax"})
# Vendors that reject stream_options (Zhipu / Z.ai put usage in the last chunk unasked).
NO_STREAM_OPTIONS = frozenset({"zhipu", "zai"})
# Local servers that take no key at all.
KEYLESS = frozenset({"ollama", "lmstudio"})


def auth(variant: str) -> tuple[str, str] | None:
    return None if variant in KEYLESS else ("authorization", "Bearer " + API_KEY)


def simple_chat(ctx: Ctx) -> None:
    b = ctx.body
    assert b["model"] == ctx.model
    assert b["messages"] == [{"role": "user", "content": "Say hello"}]
    if ctx.variant in MAX_TOKENS_ONLY:
        assert b["max_tokens"] == MAX_TOKENS and "max_completion_tokens" not in b
    else:
        assert b["max_completion_tokens"] == MAX_TOKENS
    if ctx.variant in NO_USER:
        assert "user" not in b
    else:
        assert b["user"] == USER


def system_prompt(ctx: Ctx) -> None:
    assert ctx.body["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Say hello"}]


def multi_turn(ctx: Ctx) -> None:
    assert [m["role"] for m in ctx.body["messages"]] == ["user", "assistant", "user"]
    assert ctx.body["messages"][1]["content"] == "Nice to meet you, Ada."


def tool_call(ctx: Ctx) -> None:
    if ctx.variant in NO_TOOLS:
        assert "tools" not in ctx.body and "tool_choice" not in ctx.body
        return
    assert ctx.body["tools"] == [{"type": "function", "function": {
        "name": TOOL_NAME, "description": "Current weather for a city", "parameters": WEATHER_SCHEMA}}]
    if ctx.variant in NO_TOOL_CHOICE:
        assert "tool_choice" not in ctx.body
    else:
        assert ctx.body["tool_choice"] == "auto"


def tool_result(ctx: Ctx) -> None:
    assistant, tool = ctx.body["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == ctx.tool_call_id
    assert assistant["tool_calls"][0]["function"]["name"] == TOOL_NAME
    assert tool == {"role": "tool", "tool_call_id": ctx.tool_call_id, "content": TOOL_RESULT}
    if ctx.variant not in NO_TOOLS:
        assert ctx.body["tools"][0]["function"]["name"] == TOOL_NAME


def json_schema(ctx: Ctx) -> None:
    if ctx.variant in NO_RESPONSE_FORMAT:
        assert "response_format" not in ctx.body
        return
    assert ctx.body["response_format"]["type"] == "json_schema"
    assert ctx.body["response_format"]["json_schema"]["schema"] == JSON_SCHEMA


def image_input(ctx: Ctx) -> None:
    assert ctx.body["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": IMAGE_URI}}


def streaming(ctx: Ctx) -> None:
    assert ctx.body["stream"] is True
    if ctx.variant in NO_STREAM_OPTIONS:
        assert "stream_options" not in ctx.body
    else:
        assert ctx.body["stream_options"]["include_usage"] is True


PROFILE = Profile(
    name="openai",
    fixtures=FIXTURES,
    model="gpt-4o-mini",
    provider=provider,
    path=lambda model, stream: "/v1/chat/completions",
    auth=auth,
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
    variants=VARIANTS,
)
