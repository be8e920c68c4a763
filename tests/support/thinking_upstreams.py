"""Upstreams that think with signatures and hold the caller to them, as Anthropic and Bedrock do.

Both answer a first turn with a signed thinking block, a redacted thinking block and a tool call
(streamed or not, as asked), and a turn carrying the tool's result with text; they refuse (400, in
their own error shape) a request whose last assistant turn with a tool call does not start with the
exact blocks they issued, or whose history holds thinking they never issued.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from fluxway.adapters.eventstream import encode_event
from tests.support.replies import json_reply, sse_reply

THOUGHT = ["The user wants the weather. ", "I should call get_weather for Paris."]
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds" + "Zm9vYmFy" * 8
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj"
ANSWER = "It is 18C in Paris."
CALL_ID = "toolu_01A09q90qw90lq917835lq9"
ARGS = {"city": "Paris"}
WEATHER: Any = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
BEDROCK_MODEL = "anthropic.claude-sonnet-4-20250514-v1:0"

# What a faithful gateway sends back: Anthropic's blocks, and Bedrock's reasoningContent.
ANTHROPIC_BLOCKS = [{"type": "thinking", "thinking": "".join(THOUGHT), "signature": SIGNATURE},
                    {"type": "redacted_thinking", "data": REDACTED}]
BEDROCK_BLOCKS = [{"reasoningContent": {"reasoningText": {"text": "".join(THOUGHT), "signature": SIGNATURE}}},
                  {"reasoningContent": {"redactedContent": REDACTED}}]


def _sse(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


def _anthropic_refusal(message: str) -> web.Response:
    return json_reply({"type": "error", "error": {"type": "invalid_request_error", "message": message},
                       "request_id": "req_011CThinking"}, 400)


def anthropic_check(body: dict[str, Any]) -> str | None:
    """Why Anthropic would refuse ``body`` (its own words), or ``None``."""
    messages = body.get("messages") or []
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m.get("content"), list) else []
        for j, block in enumerate(content):
            if block.get("type") in ("thinking", "redacted_thinking") and block not in ANTHROPIC_BLOCKS:
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    turns = [(i, m) for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if turns:
        i, last = turns[-1]
        content = last["content"] if isinstance(last["content"], list) else [{"type": "text"}]
        if any(b.get("type") == "tool_use" for b in content) and content[:2] != ANTHROPIC_BLOCKS:
            return (f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{content[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must "
                    "start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` "
                    "blocks). We recommend you include thinking blocks from previous turns. To avoid this "
                    "requirement, disable `thinking`. Please consult our documentation at "
                    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking")
    return None


def _answered(body: dict[str, Any]) -> bool:
    return any(isinstance(m.get("content"), list) and any(isinstance(b, dict) and b.get("type") == "tool_result"
                                                          for b in m["content"])
               for m in body.get("messages") or [])


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages``."""
    body = await request.json()
    refusal = anthropic_check(body)
    if refusal:
        return _anthropic_refusal(refusal)
    answered = _answered(body)
    head = {"id": "msg_01Thinking", "type": "message", "role": "assistant", "model": body["model"],
            "stop_sequence": None}
    if answered:
        content: list[Any] = [{"type": "text", "text": ANSWER}]
        stop, usage = "end_turn", {"input_tokens": 90, "output_tokens": 8}
    else:
        content = [*ANTHROPIC_BLOCKS, {"type": "tool_use", "id": CALL_ID, "name": "get_weather", "input": ARGS}]
        stop, usage = "tool_use", {"input_tokens": 40, "output_tokens": 60}
    if not body.get("stream"):
        return json_reply({**head, "content": content, "stop_reason": stop, "usage": usage})
    started = {**head, "content": [], "stop_reason": None,
               "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}
    frames = [_sse("message_start", {"message": started})]
    for index, block in enumerate(content):
        kind = block["type"]
        if kind == "thinking":
            frames.append(_sse("content_block_start", {"index": index, "content_block":
                                                       {"type": "thinking", "thinking": "", "signature": ""}}))
            frames += [_sse("content_block_delta", {"index": index, "delta": {"type": "thinking_delta", "thinking": t}})
                       for t in THOUGHT]
            frames.append(_sse("content_block_delta", {"index": index, "delta": {"type": "signature_delta",
                                                                                 "signature": SIGNATURE}}))
        elif kind == "redacted_thinking":
            frames.append(_sse("content_block_start", {"index": index, "content_block": block}))
        elif kind == "tool_use":
            frames.append(_sse("content_block_start", {"index": index, "content_block": {**block, "input": {}}}))
            frames.append(_sse("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": orjson.dumps(ARGS).decode()}}))
        else:
            frames.append(_sse("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
            frames.append(_sse("content_block_delta", {"index": index, "delta": {"type": "text_delta",
                                                                                 "text": block["text"]}}))
        frames.append(_sse("content_block_stop", {"index": index}))
    frames.append(_sse("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": {"output_tokens": usage["output_tokens"]}}))
    frames.append(_sse("message_stop", {}))
    return await sse_reply(request, frames)


def bedrock_check(body: dict[str, Any]) -> str | None:
    """Why Bedrock (Claude behind Converse) would refuse ``body``, or ``None``."""
    messages = body.get("messages") or []
    for i, m in enumerate(messages):
        for j, block in enumerate(m.get("content") or []):
            if "reasoningContent" in block and block not in BEDROCK_BLOCKS:
                return f"The model returned the following errors: messages.{i}.content.{j}: Invalid `signature` " \
                       "in `thinking` block"
    turns = [(i, m) for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if turns:
        i, last = turns[-1]
        content = last.get("content") or []
        if any("toolUse" in b for b in content) and content[:2] != BEDROCK_BLOCKS:
            return (f"The model returned the following errors: messages.{i}.content.0.type: Expected `thinking` or "
                    "`redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` "
                    "message must start with a thinking block")
    return None


def _bedrock_content(body: dict[str, Any]) -> tuple[list[Any], str, dict[str, int]]:
    answered = any("toolResult" in b for m in body.get("messages") or [] for b in m.get("content") or [])
    if answered:
        return [{"text": ANSWER}], "end_turn", {"inputTokens": 90, "outputTokens": 8, "totalTokens": 98}
    return ([*BEDROCK_BLOCKS, {"toolUse": {"toolUseId": CALL_ID, "name": "get_weather", "input": ARGS}}],
            "tool_use", {"inputTokens": 40, "outputTokens": 60, "totalTokens": 100})


def _bedrock_refusal(message: str) -> web.Response:
    return json_reply({"message": message}, 400, {"x-amzn-errortype": "ValidationException"})


async def bedrock_converse(request: web.Request) -> web.StreamResponse:
    """``POST /model/{model}/converse``."""
    body = await request.json()
    refusal = bedrock_check(body)
    if refusal:
        return _bedrock_refusal(refusal)
    content, stop, usage = _bedrock_content(body)
    return json_reply({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                       "usage": usage, "metrics": {"latencyMs": 120}})


async def bedrock_converse_stream(request: web.Request) -> web.StreamResponse:
    """``POST /model/{model}/converse-stream`` (the event stream, thinking as reasoningContent deltas)."""
    body = await request.json()
    refusal = bedrock_check(body)
    if refusal:
        return _bedrock_refusal(refusal)
    content, stop, usage = _bedrock_content(body)
    events: list[tuple[str, Any]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(content):
        if "reasoningContent" in block and "reasoningText" in block["reasoningContent"]:
            events += [("contentBlockDelta", {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": t}}})
                       for t in THOUGHT]
            events.append(("contentBlockDelta", {"contentBlockIndex": index,
                                                 "delta": {"reasoningContent": {"signature": SIGNATURE}}}))
        elif "reasoningContent" in block:
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {"reasoningContent": {
                "redactedContent": REDACTED}}}))
        elif "toolUse" in block:
            use = block["toolUse"]
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": {
                "toolUseId": use["toolUseId"], "name": use["name"]}}}))
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {
                "input": orjson.dumps(ARGS).decode()}}}))
        else:
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": block["text"]}}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events += [("messageStop", {"stopReason": stop}), ("metadata", {"usage": usage, "metrics": {"latencyMs": 120}})]
    frames = [encode_event(name, orjson.dumps(payload)) for name, payload in events]
    return await sse_reply(request, frames, content_type="application/vnd.amazon.eventstream")


def routes(kind: str) -> list[tuple[str, Any]]:
    """The (path, handler) pairs of the ``kind`` ("anthropic" | "bedrock") mock."""
    if kind == "anthropic":
        return [("/v1/messages", anthropic_messages)]
    return [(f"/model/{BEDROCK_MODEL}/converse", bedrock_converse),
            (f"/model/{BEDROCK_MODEL}/converse-stream", bedrock_converse_stream)]
