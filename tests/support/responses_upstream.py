"""An OpenAI-compatible chat upstream scripted for the Responses API tests: a model that calls the
``weather`` tool when given tools (and no tool result yet), answers from a tool result once it has
one, answers JSON when asked for a json_schema, and "Hello there!" otherwise; as JSON or a stream."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.support.openai_bodies import chunk, completion, openai_sse, text_stream, usage, usage_chunk
from tests.support.replies import json_reply, sse_reply

IDS: dict[str, Any] = {"id": "chatcmpl-r1", "model": "gpt-4o-mini-2024-07-18"}
TOKENS = usage(11, 5, prompt_tokens_details={"cached_tokens": 2})
WEATHER_JSON = {"city": "Paris", "temp_c": 18}
TOOL_ANSWER = "It is 18C in Paris."


def _tool_call_stream(name: str, call_id: str) -> list[dict[str, Any]]:
    return [
        chunk({"role": "assistant", "tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}, **IDS),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}, **IDS),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, **IDS),
        chunk({}, "tool_calls", **IDS),
        usage_chunk(TOKENS, **IDS),
    ]


def _reply(body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """(the answer's text, or None and the tool calls to make)."""
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "tool":
        return f"{TOOL_ANSWER} ({last['content']})", None
    if body.get("tools"):
        name = body["tools"][0]["function"]["name"]
        args = '{"city": "Paris"}'
        return None, [{"id": "call_w1", "type": "function", "function": {"name": name, "arguments": args}}]
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_schema", "json_object"):
        return orjson.dumps(WEATHER_JSON).decode(), None
    return "Hello there!", None


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    text, calls = _reply(body)
    last = body["messages"][-1]
    content = last.get("content") if isinstance(last.get("content"), str) else ""
    if body.get("stream"):
        if "break mid-stream" in content:
            frames = openai_sse(text_stream(["Hel", "lo "], tokens=TOKENS, **IDS)[:2], done=False)
            return await sse_reply(request, [*frames, b"data: {broken\n\n"], delay=0.02)
        if calls is not None:
            return await sse_reply(request, openai_sse(_tool_call_stream(calls[0]["function"]["name"], calls[0]["id"])))
        assert text is not None
        pieces = [text[:3], text[3:6], text[6:]] if len(text) > 6 else [text]
        return await sse_reply(request, openai_sse(text_stream(pieces, tokens=TOKENS, **IDS)))
    if calls is not None:
        return json_reply(completion(None, finish="tool_calls", tokens=TOKENS, tool_calls=calls, **IDS))
    return json_reply(completion(text, tokens=TOKENS, **IDS))
