"""Gemini answers: a GenerateContentResponse -> an OpenAI ``chat.completion`` (and usage).

Answers may use camelCase or snake_case keys; both are read.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fluxway.adapters.base import dumps
from fluxway.adapters.gemini.wire import make_call_id, pick
from fluxway.adapters.toolkit import assistant_message, chat_choice, chat_completion, tool_call
from fluxway.canonical import JSON, ErrorKind, UpstreamError, Usage

FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "LANGUAGE",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def usage_from_gemini(meta: Any) -> tuple[JSON, Usage]:
    """usageMetadata -> (OpenAI usage, canonical Usage); thoughts count as completion tokens."""
    prompt = int(pick(meta, "promptTokenCount", "prompt_token_count") or 0)
    prompt += int(pick(meta, "toolUsePromptTokenCount", "tool_use_prompt_token_count") or 0)
    candidates = int(pick(meta, "candidatesTokenCount", "candidates_token_count") or 0)
    thoughts = int(pick(meta, "thoughtsTokenCount", "thoughts_token_count") or 0)
    cached = int(pick(meta, "cachedContentTokenCount", "cached_content_token_count") or 0)
    completion = candidates + thoughts
    out: JSON = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return out, Usage(prompt, completion, cached_tokens=cached, reasoning_tokens=thoughts)


def finish_reason(reason: Any, has_tool_calls: bool) -> str:
    reason = str(reason or "STOP")
    if reason in FILTERED:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def candidate_parts(cand: Any) -> list[JSON]:
    content = cand.get("content") if isinstance(cand, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def candidate_index(cand: Any, pos: int) -> int:
    index = cand.get("index") if isinstance(cand, dict) else None
    return index if isinstance(index, int) else pos


def part_tool_call(part: JSON) -> JSON | None:
    fc = pick(part, "functionCall", "function_call")
    if not isinstance(fc, dict):
        return None
    sig = pick(part, "thoughtSignature", "thought_signature")
    args = fc.get("args")
    args_json = dumps(args if args is not None else {}).decode()
    return tool_call(make_call_id(sig if isinstance(sig, str) else None), fc.get("name"), args_json)


def block_reason(data: JSON) -> str | None:
    reason = pick(pick(data, "promptFeedback", "prompt_feedback"), "blockReason", "block_reason")
    return str(reason) if reason else None


def response_from_gemini(data: JSON, model: str) -> tuple[JSON, Usage]:
    candidates = data.get("candidates")
    choices: list[JSON] = []
    for pos, cand in enumerate(candidates if isinstance(candidates, list) else []):
        texts: list[str] = []
        reasoning: list[str] = []
        tool_calls: list[JSON] = []
        for part in candidate_parts(cand):
            call = part_tool_call(part)
            if call:
                tool_calls.append(call)
            elif isinstance(part.get("text"), str):
                (reasoning if part.get("thought") else texts).append(part["text"])
        message = assistant_message("".join(texts) if texts else None, tool_calls, reasoning, refusal=True)
        reason = finish_reason(pick(cand, "finishReason", "finish_reason"), bool(tool_calls))
        index = candidate_index(cand, pos)
        choices.append(chat_choice(index, message, reason))
    if not choices:
        if not block_reason(data):
            raise UpstreamError(ErrorKind.PROTOCOL, "gemini response has no candidates")
        choices.append(chat_choice(0, assistant_message(None, [], [], refusal=True), "content_filter"))
    usage, canonical = usage_from_gemini(pick(data, "usageMetadata", "usage_metadata"))
    body = chat_completion(
        str(pick(data, "responseId", "response_id") or "chatcmpl-" + uuid.uuid4().hex[:24]),
        int(time.time()),
        str(pick(data, "modelVersion", "model_version") or model),
        choices,
        usage,
    )
    return body, canonical
