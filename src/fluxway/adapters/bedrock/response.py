"""Bedrock answers: a Converse answer -> an OpenAI ``chat.completion`` (and usage)."""

from __future__ import annotations

from typing import Any

import orjson

from fluxway.adapters.toolkit import (
    JSON_TOOL,
    assistant_message,
    chat_choice,
    chat_completion,
    mapped_finish,
    tool_call,
)
from fluxway.canonical import JSON, ErrorKind, UpstreamError, Usage

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def usage_of(usage: Any) -> Usage | None:
    """Converse ``usage``; OpenAI's prompt_tokens include cached (read and written) tokens."""
    if not isinstance(usage, dict):
        return None
    cache_read = int(usage.get("cacheReadInputTokens") or 0)
    cache_write = int(usage.get("cacheWriteInputTokens") or 0)
    return Usage(
        prompt_tokens=int(usage.get("inputTokens") or 0) + cache_read + cache_write,
        completion_tokens=int(usage.get("outputTokens") or 0),
        cached_tokens=cache_read,
    )


def finish_reason(stop: Any, json_mode: bool = False) -> str:
    return mapped_finish(FINISH_REASONS, stop or "end_turn", json_mode)


def message_from_converse(content: Any, json_mode: bool) -> JSON:
    texts: list[str] = []
    reasoning: list[str] = []
    thinking: list[JSON] = []
    calls: list[JSON] = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if "text" in block:
            texts.append(str(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"] or {}
            if json_mode and use.get("name") == JSON_TOOL:
                texts.append(orjson.dumps(use.get("input") or {}).decode())
                continue
            calls.append(tool_call(use.get("toolUseId", ""), use.get("name", ""),
                                   orjson.dumps(use.get("input") or {}).decode()))
        elif "reasoningContent" in block:
            rc = block["reasoningContent"] or {}
            rt = rc.get("reasoningText") or {}
            if rt.get("text"):
                reasoning.append(rt["text"])
                thinking.append({"type": "thinking", "thinking": rt["text"], "signature": rt.get("signature") or ""})
            elif rc.get("redactedContent"):
                thinking.append({"type": "redacted_thinking", "data": rc["redactedContent"]})
    return assistant_message("".join(texts) if texts or not calls else None, calls, reasoning, thinking)


def response_from_converse(
    data: JSON, model: str, created: int, request_id: str, json_mode: bool
) -> tuple[JSON, Usage | None]:
    """A Converse answer -> (the OpenAI body, its usage if Bedrock sent any)."""
    output = data.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict):
        raise UpstreamError(ErrorKind.PROTOCOL, "Bedrock Converse answer has no output.message")
    usage = usage_of(data.get("usage"))
    choice = chat_choice(
        0, message_from_converse(message.get("content"), json_mode), finish_reason(data.get("stopReason"), json_mode)
    )
    out = chat_completion("chatcmpl-" + request_id, created, model, [choice], usage.to_openai() if usage else None)
    return out, usage
