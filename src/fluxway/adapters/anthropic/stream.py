"""Anthropic streams: Messages SSE events -> OpenAI ``chat.completion.chunk`` dicts."""

from __future__ import annotations

import time
from typing import Any

from fluxway.adapters.anthropic.errors import error_from_anthropic
from fluxway.adapters.anthropic.response import finish_reason, usage_from_anthropic
from fluxway.adapters.base import dumps, openai_chunk
from fluxway.adapters.toolkit import (
    JSON_TOOL,
    SHAPE_ERRORS,
    arguments_delta,
    odd_shape,
    stream_event,
    tool_call_start,
)
from fluxway.canonical import JSON, ErrorKind, StreamChunk, UpstreamError
from fluxway.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder


class AnthropicStreamDecoder:
    """Anthropic SSE events -> OpenAI chunks: a role chunk, deltas, a finish chunk, a usage chunk."""

    __slots__ = (
        "_created",
        "_finish",
        "_id",
        "_json_tool",
        "_model",
        "_sse",
        "_started",
        "_stopped",
        "_thinking",
        "_thinking_count",
        "_tool_index",
        "_tools",
        "_usage",
    )

    def __init__(self, model: str, json_tool: bool = False, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._sse = SSEDecoder(max_event_bytes)
        self._model = model
        self._json_tool = json_tool
        self._id = "msg"
        self._created = int(time.time())
        self._started = False
        self._stopped = False
        self._finish: str | None = None
        self._usage: JSON = {}
        self._tools: dict[int, int] = {}  # content block index -> tool_calls index (-1: the JSON tool)
        self._tool_index = 0
        self._thinking: dict[int, JSON] = {}  # content block index -> the thinking block being built
        self._thinking_count = 0

    def feed(self, data: bytes) -> list[StreamChunk]:
        return self._events(self._sse.feed(data))

    def close(self) -> list[StreamChunk]:
        out = self._events(self._sse.flush())
        if not self._stopped:
            raise UpstreamError(ErrorKind.PROTOCOL, "anthropic stream ended before message_stop")
        return out

    def _chunk(self, delta: JSON, finish: str | None = None) -> StreamChunk:
        return openai_chunk(self._id, self._created, self._model, delta, finish)

    def _start(self, out: list[StreamChunk]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def _events(self, events: list[Any]) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for ev in events:
            if self._stopped or not ev.data:
                continue
            data = stream_event(ev.data, "anthropic")
            try:
                self._event(str(data.get("type") or ev.event or ""), data, out)
            except SHAPE_ERRORS as exc:
                raise odd_shape("anthropic", "a stream event", exc) from None
        return out

    def _event(self, kind: str, data: JSON, out: list[StreamChunk]) -> None:
        if kind == "message_start":
            msg: JSON = data["message"] if isinstance(data.get("message"), dict) else {}
            self._id = str(msg.get("id") or self._id)
            self._model = str(msg.get("model") or self._model)
            if isinstance(msg.get("usage"), dict):
                self._usage.update(msg["usage"])
            self._start(out)
        elif kind == "content_block_start":
            self._start(out)
            self._block_start(int(data.get("index") or 0), data.get("content_block") or {}, out)
        elif kind == "content_block_delta":
            self._start(out)
            self._block_delta(int(data.get("index") or 0), data.get("delta") or {}, out)
        elif kind == "content_block_stop":
            self._block_stop(int(data.get("index") or 0), out)
        elif kind == "message_delta":
            self._start(out)
            if isinstance(data.get("usage"), dict):
                self._usage.update({k: v for k, v in data["usage"].items() if v is not None})
            delta: JSON = data["delta"] if isinstance(data.get("delta"), dict) else {}
            if delta.get("stop_reason") and self._finish is None:
                finish = finish_reason(delta["stop_reason"], self._json_tool)
                if finish == "tool_calls" and not self._tool_index:
                    finish = "stop"
                self._finish = finish
                out.append(self._chunk({}, finish))
        elif kind == "message_stop":
            self._start(out)
            if self._finish is None:
                self._finish = "stop"
                out.append(self._chunk({}, "stop"))
            usage, _ = usage_from_anthropic(self._usage)
            out.append(openai_chunk(self._id, self._created, self._model, usage=usage))
            self._stopped = True
        elif kind == "error":
            raise error_from_anthropic(529 if "overloaded" in str(data) else 500, {}, dumps(data))
        # ping and unknown events carry nothing for an OpenAI client.

    def _block_start(self, index: int, block: JSON, out: list[StreamChunk]) -> None:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking":
            self._thinking[index] = {"type": "thinking", "thinking": str(block.get("thinking") or ""),
                                     "signature": str(block.get("signature") or "")}
            if block.get("thinking"):
                out.append(self._chunk({"reasoning_content": block["thinking"]}))
        elif kind == "redacted_thinking":
            self._thinking[index] = {"type": "redacted_thinking", "data": str(block.get("data") or "")}
        elif kind == "tool_use" and self._json_tool and block.get("name") == JSON_TOOL:
            self._tools[index] = -1
        elif kind == "tool_use":
            i = self._tool_index
            self._tool_index += 1
            self._tools[index] = i
            args = dumps(block["input"]).decode() if block.get("input") else ""
            out.append(self._chunk(tool_call_start(i, block.get("id"), block.get("name"), args)))

    def _block_delta(self, index: int, delta: JSON, out: list[StreamChunk]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            if delta.get("text"):
                out.append(self._chunk({"content": delta["text"]}))
        elif kind == "thinking_delta":
            if delta.get("thinking"):
                if index in self._thinking:
                    self._thinking[index]["thinking"] += str(delta["thinking"])
                out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        elif kind == "signature_delta":
            if index in self._thinking and delta.get("signature"):
                self._thinking[index]["signature"] += str(delta["signature"])
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            tool = self._tools.get(index)
            if not fragment or tool is None:
                return
            if tool == -1:
                out.append(self._chunk({"content": fragment}))
            else:
                out.append(self._chunk(arguments_delta(tool, fragment)))
        # citations_delta has no OpenAI counterpart.

    def _block_stop(self, index: int, out: list[StreamChunk]) -> None:
        """A finished thinking block goes out whole (with its signature) as ``thinking_blocks``."""
        block = self._thinking.pop(index, None)
        if block is None:
            return
        out.append(self._chunk({"thinking_blocks": [{**block, "index": self._thinking_count}]}))
        self._thinking_count += 1
