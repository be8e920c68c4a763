"""Anthropic answers: a Messages answer -> an OpenAI ``chat.completion`` (and usage)."""

from __future__ import annotations

import time
from typing import Any

from fluxway.adapters.base import dumps
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
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
    # The turn was paused (long server-tool work) and is incomplete: send it back to continue.
    "pause_turn": "length",
}


def usage_from_anthropic(u: Any) -> tuple[JSON, Usage]:
    """Anthropic usage -> (OpenAI usage dict, canonical Usage). Prompt tokens include cache tokens."""
    u = u if isinstance(u, dict) else {}
    read = int(u.get("cache_read_input_tokens") or 0)
    created = int(u.get("cache_creation_input_tokens") or 0)
    prompt = int(u.get("input_tokens") or 0) + read + created
    completion = int(u.get("output_tokens") or 0)
    details = u.get("output_tokens_details")
    reasoning = int(details.get("thinking_tokens") or 0) if isinstance(details, dict) else 0
    out: JSON = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if read or created:
        out["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": created}
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out, Usage(prompt, completion, cached_tokens=read, reasoning_tokens=reasoning)


def finish_reason(stop_reason: Any, json_tool: bool) -> str:
    return mapped_finish(FINISH_REASONS, stop_reason, json_tool)


def response_from_anthropic(data: JSON, model: str, json_tool: bool) -> tuple[JSON, Usage]:
    content = data.get("content")
    if not isinstance(content, list):
        raise UpstreamError(ErrorKind.PROTOCOL, "anthropic response has no 'content' list")
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[JSON] = []
    tool_calls: list[JSON] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use" and json_tool and block.get("name") == JSON_TOOL:
            texts.append(dumps(block.get("input") or {}).decode())
        elif kind == "tool_use":
            args = dumps(block.get("input") if block.get("input") is not None else {}).decode()
            tool_calls.append(tool_call(block.get("id"), block.get("name"), args))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
            thinking_blocks.append(block)
        elif kind == "redacted_thinking":
            thinking_blocks.append(block)
    content_text = "".join(texts) if texts else None
    message = assistant_message(content_text, tool_calls, reasoning, thinking_blocks, refusal=True)
    usage, canonical = usage_from_anthropic(data.get("usage"))
    finish = finish_reason(data.get("stop_reason"), json_tool)
    if finish == "tool_calls" and not tool_calls:
        finish = "stop"
    body = chat_completion(
        str(data.get("id") or "msg"),
        int(time.time()),
        str(data.get("model") or model),
        [chat_choice(0, message, finish)],
        usage,
    )
    return body, canonical
