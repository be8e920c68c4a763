"""Gemini streams: ``data: {GenerateContentResponse}`` SSE events -> OpenAI chunks."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fluxway.adapters.base import openai_chunk
from fluxway.adapters.gemini.errors import error_from_gemini
from fluxway.adapters.gemini.response import (
    block_reason,
    candidate_index,
    candidate_parts,
    finish_reason,
    part_tool_call,
    usage_from_gemini,
)
from fluxway.adapters.gemini.wire import pick
from fluxway.adapters.toolkit import SHAPE_ERRORS, odd_shape, stream_event
from fluxway.canonical import JSON, ErrorKind, StreamChunk, UpstreamError
from fluxway.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder


class GeminiStreamDecoder:
    """``data: {GenerateContentResponse}`` events -> OpenAI chunks; usage comes in a last chunk.

    Gemini sends no terminal event: the stream is complete when every candidate has a
    ``finishReason`` (or the prompt was blocked) and the connection closes.
    """

    __slots__ = ("_created", "_finished", "_head", "_id", "_model", "_seen", "_sse", "_started", "_tools", "_usage")

    _HEAD_LIMIT = 65536

    def __init__(self, model: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._sse = SSEDecoder(max_event_bytes)
        self._model = model
        self._id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self._created = int(time.time())
        self._seen = False
        self._head = b""  # the first bytes, to report a non-SSE (plain JSON) error body
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._usage: Any = None

    def feed(self, data: bytes) -> list[StreamChunk]:
        if not self._seen and len(self._head) < self._HEAD_LIMIT:
            self._head += data[: self._HEAD_LIMIT - len(self._head)]
        return self._events(self._sse.feed(data))

    def close(self) -> list[StreamChunk]:
        out = self._events(self._sse.flush())
        if not self._seen and self._head.strip():
            err = error_from_gemini(500, {}, self._head.strip())
            if err.body is not None:
                raise err
        if not self._finished:
            raise UpstreamError(ErrorKind.PROTOCOL, "gemini stream ended before a finishReason")
        try:
            usage, _ = usage_from_gemini(self._usage)
        except SHAPE_ERRORS as exc:
            raise odd_shape("gemini", "usage", exc) from None
        out.append(openai_chunk(self._id, self._created, self._model, usage=usage))
        return out

    def _chunk(self, index: int, delta: JSON, finish: str | None = None) -> StreamChunk:
        return openai_chunk(self._id, self._created, self._model, delta, finish, index=index)

    def _start(self, index: int, out: list[StreamChunk]) -> None:
        if index not in self._started:
            self._started.add(index)
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))

    def _events(self, events: list[Any]) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for ev in events:
            if not ev.data.strip():
                continue
            data = stream_event(ev.data, "gemini")
            if not self._seen:
                self._seen = True
                self._head = b""
                self._id = str(pick(data, "responseId", "response_id") or self._id)
            if isinstance(data.get("error"), dict):
                raise error_from_gemini(500, {}, ev.data.encode())
            self._model = str(pick(data, "modelVersion", "model_version") or self._model)
            usage = pick(data, "usageMetadata", "usage_metadata")
            if isinstance(usage, dict):
                self._usage = usage
            try:
                self._response(data, out)
            except SHAPE_ERRORS as exc:
                raise odd_shape("gemini", "a stream event", exc) from None
        return out

    def _response(self, data: JSON, out: list[StreamChunk]) -> None:
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            if block_reason(data) and 0 not in self._finished:
                self._start(0, out)
                self._finished.add(0)
                out.append(self._chunk(0, {}, "content_filter"))
            return
        for pos, cand in enumerate(candidates):
            index = candidate_index(cand, pos)
            if index in self._finished:
                continue
            self._start(index, out)
            for part in candidate_parts(cand):
                call = part_tool_call(part)
                if call:
                    n = self._tools.get(index, 0)
                    self._tools[index] = n + 1
                    out.append(self._chunk(index, {"tool_calls": [{"index": n, **call}]}))
                elif isinstance(part.get("text"), str) and part["text"]:
                    key = "reasoning_content" if part.get("thought") else "content"
                    out.append(self._chunk(index, {key: part["text"]}))
            reason = pick(cand, "finishReason", "finish_reason")
            if reason:
                self._finished.add(index)
                out.append(self._chunk(index, {}, finish_reason(reason, bool(self._tools.get(index)))))
