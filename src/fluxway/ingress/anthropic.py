"""The Anthropic Messages shape (``POST /v1/messages``): requests in, Messages and event streams out.

Requests are translated by :mod:`fluxway.ingress.anthropic_request`; this module renders canonical
(OpenAI) answers, stream chunks and errors as the Anthropic API would have sent them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from fluxway.canonical import JSON, CanonicalRequest, CanonicalResponse, Endpoint, StreamChunk, Usage
from fluxway.errors import GatewayError, anthropic_error_body
from fluxway.ingress.anthropic_request import parse_messages_request
from fluxway.ingress.base import bearer_token
from fluxway.sse import encode
from fluxway.thinking import thinking_blocks
from fluxway.tokens import estimate_prompt_tokens

_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

def message_id(upstream_id: Any, fallback: str | None = None) -> str:
    """``msg_...`` derived from the upstream's id (``chatcmpl-abc`` -> ``msg_abc``)."""
    if isinstance(upstream_id, str) and upstream_id:
        ident: str = upstream_id
        if ident.startswith("msg_"):
            return ident
        for prefix in ("chatcmpl-", "chatcmpl_", "cmpl-"):
            if ident.startswith(prefix):
                ident = ident[len(prefix) :]
                break
        return "msg_" + ident
    return "msg_" + (fallback or uuid.uuid4().hex)


def stop_reason(finish: Any, choice: Mapping[str, Any], stops: Any, used_tools: bool) -> tuple[str, str | None]:
    """OpenAI ``finish_reason`` -> Anthropic ``(stop_reason, stop_sequence)``.

    OpenAI does not say which stop sequence matched; vLLM-style servers put it in the choice's
    ``stop_reason`` (and an Anthropic upstream's adapter may put it in ``stop_sequence``).
    """
    if finish in (None, "stop") and used_tools:
        return "tool_use", None
    if finish == "stop" and isinstance(stops, list):
        for name in ("stop_sequence", "stop_reason"):
            matched = choice.get(name)
            if isinstance(matched, str) and matched in stops:
                return "stop_sequence", matched
    if isinstance(finish, str):
        return _FINISH.get(finish, finish if finish in _PASSTHROUGH else "end_turn"), None
    return "end_turn", None


_PASSTHROUGH = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"}
)


def usage_block(usage: Usage | None, raw: Mapping[str, Any] | None = None) -> JSON:
    """Canonical usage -> Anthropic usage (``input_tokens`` excludes cache reads and writes)."""
    if usage is None:
        usage = Usage.from_openai(raw) or Usage()
    written = 0
    if raw:
        details = raw.get("prompt_tokens_details")
        if isinstance(details, dict):
            written = int(details.get("cache_write_tokens") or details.get("cache_creation_tokens") or 0)
    out: JSON = {
        "input_tokens": max(0, usage.prompt_tokens - usage.cached_tokens - written),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": usage.cached_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def tool_input(arguments: Any) -> JSON:
    """OpenAI's JSON-string arguments -> an Anthropic ``input`` object (never fails)."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _reasoning(obj: Mapping[str, Any]) -> str | None:
    for name in ("reasoning_content", "reasoning"):
        value = obj.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def render_message(req: CanonicalRequest, resp: CanonicalResponse) -> JSON:
    body = resp.body
    choices = body.get("choices")
    choice = _dict(choices[0]) if isinstance(choices, list) and choices else {}
    msg = _dict(choice.get("message"))
    content: list[JSON] = []
    blocks = thinking_blocks(msg)
    if blocks:
        content.extend(blocks)
    else:
        reasoning = _reasoning(msg)
        if reasoning:
            content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _text(msg.get("content")) or (msg.get("refusal") if isinstance(msg.get("refusal"), str) else "")
    if text:
        content.append({"type": "text", "text": text})
    calls = msg.get("tool_calls")
    used_tools = False
    if isinstance(calls, list):
        for call in calls:
            if not isinstance(call, dict):
                continue
            fn = _dict(call.get("function"))
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                    "name": fn.get("name") or "",
                    "input": tool_input(fn.get("arguments")),
                }
            )
            used_tools = True
    reason, sequence = stop_reason(choice.get("finish_reason"), choice, req.body.get("stop"), used_tools)
    raw_usage = body.get("usage")
    return {
        "id": message_id(body.get("id")),
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_block(resp.usage, raw_usage if isinstance(raw_usage, dict) else None),
    }


class AnthropicStreamEncoder:
    """OpenAI chunks -> the Anthropic event stream, one content block at a time."""

    __slots__ = (
        "_blocks",
        "_finish",
        "_model",
        "_open",
        "_open_kind",
        "_req",
        "_request_id",
        "_started",
        "_stop_sequence",
        "_stops",
        "_tools",
        "_usage",
        "_usage_raw",
        "_used_tools",
    )

    def __init__(self, req: CanonicalRequest, request_id: str) -> None:
        self._req = req
        self._model = req.model
        self._stops = req.body.get("stop")
        self._request_id = request_id
        self._started = False
        self._blocks = 0  # content blocks opened so far (the next index)
        self._open: int | None = None  # index of the open block
        self._open_kind: str | None = None  # "text" | "thinking" | "tool_use"
        self._tools: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._used_tools = False
        self._finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        self._usage_raw: JSON | None = None

    def _prompt_estimate(self) -> Usage | None:
        """Before the upstream reports usage (most send it only at the end): Fluxway's own count of
        the prompt, so ``message_start`` never says 0 input tokens."""
        if self._usage_raw is not None:
            return None
        return Usage(prompt_tokens=estimate_prompt_tokens(self._req.body, self._model), estimated=True)

    @staticmethod
    def _event(name: str, payload: JSON) -> bytes:
        return encode(orjson.dumps(payload), name)

    def _start(self, chunk_id: Any) -> bytes:
        self._started = True
        usage = usage_block(self._usage or self._prompt_estimate(), self._usage_raw)
        usage["output_tokens"] = 0
        message: JSON = {
            "id": message_id(chunk_id, self._request_id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return self._event("message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_kind = self._open, None, None
        return self._event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _begin(self, kind: str, block: JSON) -> bytes:
        out = self._close()
        index = self._blocks
        self._blocks += 1
        self._open, self._open_kind = index, kind
        return out + self._event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )

    def _delta(self, index: int, delta: JSON) -> bytes:
        return self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def chunk(self, chunk: StreamChunk) -> bytes:
        data = chunk.data
        usage = data.get("usage")
        if isinstance(usage, dict) and usage:
            self._usage_raw = usage
            self._usage = Usage.from_openai(usage)
        out = b"" if self._started else self._start(data.get("id"))
        choices = data.get("choices")
        if not isinstance(choices, list):
            return out
        for choice in choices:
            if isinstance(choice, dict) and not choice.get("index"):
                out += self._choice(choice)
        return out

    def _choice(self, choice: JSON) -> bytes:
        out = b""
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = _reasoning(delta)
            if reasoning:
                if self._open_kind != "thinking":
                    out += self._begin("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out += self._delta(self._blocks - 1, {"type": "thinking_delta", "thinking": reasoning})
            for block in thinking_blocks(delta):
                out += self._thinking_block(block)
            text = _text(delta.get("content")) or (delta["refusal"] if isinstance(delta.get("refusal"), str) else "")
            if text:
                if self._open_kind != "text":
                    out += self._begin("text", {"type": "text", "text": ""})
                out += self._delta(self._blocks - 1, {"type": "text_delta", "text": text})
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        out += self._tool_call(call)
        finish = choice.get("finish_reason")
        if finish:
            self._finish = finish
            reason, sequence = stop_reason(finish, choice, self._stops, False)
            if reason == "stop_sequence":
                self._stop_sequence = sequence
        return out

    def _thinking_block(self, block: JSON) -> bytes:
        """A complete thinking block: its signature closes the open thinking block (whose text has
        streamed), or it is sent whole; a redacted block is a block of its own."""
        out = b""
        if block["type"] == "redacted_thinking":
            out += self._begin("redacted_thinking", block)
            return out + self._close()
        if self._open_kind != "thinking":
            out += self._begin("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            if block["thinking"]:
                out += self._delta(self._blocks - 1, {"type": "thinking_delta", "thinking": block["thinking"]})
        if block["signature"]:
            out += self._delta(self._blocks - 1, {"type": "signature_delta", "signature": block["signature"]})
        return out + self._close()

    def _tool_call(self, call: JSON) -> bytes:
        out = b""
        position = call.get("index")
        if isinstance(position, int):
            key = position
        elif call.get("id") or not self._tools:  # no index: a new call has an id, a fragment has none
            key = len(self._tools)
        else:
            key = next(reversed(self._tools))
        fn = _dict(call.get("function"))
        index = self._tools.get(key)
        if index is None:
            block: JSON = {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                "name": fn.get("name") or "",
                "input": {},
            }
            out += self._begin("tool_use", block)
            index = self._blocks - 1
            self._tools[key] = index
            self._used_tools = True
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            out += self._delta(index, {"type": "input_json_delta", "partial_json": arguments})
        return out

    def finish(self, usage: Usage | None) -> bytes:
        out = b"" if self._started else self._start(None)
        out += self._close()
        if usage is not None:
            self._usage = usage
        reason, _ = stop_reason(self._finish, {}, None, self._used_tools)
        sequence = None
        if reason == "end_turn" and self._stop_sequence is not None:
            reason, sequence = "stop_sequence", self._stop_sequence
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage_block(self._usage, self._usage_raw),
        }
        out += self._event("message_delta", delta)
        return out + self._event("message_stop", {"type": "message_stop"})

    def error(self, err: GatewayError) -> bytes:
        return self._event("error", anthropic_error_body(err))


class AnthropicIngress:
    """Serves ``POST /v1/messages`` in the Anthropic Messages shape."""

    name = "anthropic"
    content_type = "application/json"

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        key = headers.get("x-api-key")
        if key and key.strip():
            return key.strip()
        return bearer_token(headers)

    def parse(self, endpoint: Endpoint, body: bytes) -> CanonicalRequest:
        if endpoint is not Endpoint.CHAT:
            raise GatewayError(404, f"the Anthropic shape has no '{endpoint.value}' endpoint", type="not_found_error")
        return parse_messages_request(body)

    def render(self, req: CanonicalRequest, resp: CanonicalResponse) -> bytes:
        return orjson.dumps(render_message(req, resp))

    def stream_encoder(self, req: CanonicalRequest, request_id: str) -> AnthropicStreamEncoder:
        return AnthropicStreamEncoder(req, request_id)

    def render_error(self, err: GatewayError) -> bytes:
        return orjson.dumps(anthropic_error_body(err))

    def extra_headers(self, request_id: str) -> list[tuple[bytes, bytes]]:
        return [(b"request-id", request_id.encode())]
