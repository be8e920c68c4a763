"""Bedrock streams: ConverseStream event-stream messages -> OpenAI ``chat.completion.chunk`` dicts."""

from __future__ import annotations

import uuid

import orjson

from fluxway.adapters.base import openai_chunk
from fluxway.adapters.bedrock.errors import error_kind
from fluxway.adapters.bedrock.response import finish_reason, usage_of
from fluxway.adapters.eventstream import MAX_MESSAGE, EventMessage, EventStreamDecoder
from fluxway.adapters.toolkit import JSON_TOOL, arguments_delta, tool_call_start
from fluxway.canonical import JSON, ErrorKind, StreamChunk, UpstreamError


class BedrockStreamDecoder:
    """ConverseStream event-stream messages -> OpenAI ``chat.completion.chunk`` dicts."""

    __slots__ = ("_created", "_events", "_id", "_json_blocks", "_json_mode", "_model", "_stopped", "_thinking",
                 "_thinking_count", "_tools")

    def __init__(
        self, model: str, created: int, json_mode: bool = False, max_event_bytes: int = MAX_MESSAGE
    ) -> None:
        self._events = EventStreamDecoder(max_event_bytes)
        self._model = model
        self._created = created
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._json_mode = json_mode
        self._json_blocks: set[int] = set()
        self._tools: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        self._stopped = False
        self._thinking: dict[int, JSON] = {}  # content block index -> the thinking block being built
        self._thinking_count = 0

    def feed(self, data: bytes) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for msg in self._events.feed(data):
            self._message(msg, out)
        return out

    def close(self) -> list[StreamChunk]:
        self._events.close()
        if not self._stopped:
            raise UpstreamError(ErrorKind.PROTOCOL, "Bedrock stream ended before messageStop")
        return []

    def _chunk(self, delta: JSON, finish: str | None = None) -> StreamChunk:
        return openai_chunk(self._id, self._created, self._model, delta, finish)

    def _message(self, msg: EventMessage, out: list[StreamChunk]) -> None:
        mtype = msg.header(":message-type") or "event"
        if mtype == "exception":
            xtype = msg.header(":exception-type") or "exception"
            text = ""
            try:
                payload = orjson.loads(msg.payload) if msg.payload else {}
                if isinstance(payload, dict):
                    text = str(payload.get("message") or payload.get("Message") or "")
            except orjson.JSONDecodeError:
                text = msg.payload[:200].decode("utf-8", "replace")
            raise UpstreamError(error_kind(xtype, text, 500), f"{xtype}: {text}".rstrip(": "))
        if mtype == "error":
            code = msg.header(":error-code") or "error"
            text = msg.header(":error-message") or ""
            raise UpstreamError(error_kind(code, text, 500), f"{code}: {text}".rstrip(": "))
        etype = msg.header(":event-type")
        try:
            ev = orjson.loads(msg.payload) if msg.payload else {}
        except orjson.JSONDecodeError:
            raise UpstreamError(ErrorKind.PROTOCOL, f"Bedrock sent a malformed {etype} event") from None
        if not isinstance(ev, dict):
            raise UpstreamError(ErrorKind.PROTOCOL, f"Bedrock sent a {etype} event that is not an object")
        if etype == "messageStart":
            out.append(self._chunk({"role": "assistant", "content": ""}))
        elif etype == "contentBlockStart":
            use = (ev.get("start") or {}).get("toolUse")
            index = int(ev.get("contentBlockIndex") or 0)
            if isinstance(use, dict):
                if self._json_mode and use.get("name") == JSON_TOOL:
                    self._json_blocks.add(index)
                    return
                tool_index = self._tools.setdefault(index, len(self._tools))
                out.append(self._chunk(tool_call_start(tool_index, use.get("toolUseId", ""), use.get("name", ""))))
        elif etype == "contentBlockDelta":
            self._delta(int(ev.get("contentBlockIndex") or 0), ev.get("delta") or {}, out)
        elif etype == "messageStop":
            self._stopped = True
            out.append(self._chunk({}, finish_reason(ev.get("stopReason"), self._json_mode)))
        elif etype == "metadata":
            usage = usage_of(ev.get("usage"))
            if usage:
                out.append(openai_chunk(self._id, self._created, self._model, usage=usage.to_openai()))
        elif etype == "contentBlockStop":
            block = self._thinking.pop(int(ev.get("contentBlockIndex") or 0), None)
            if block is not None:  # a finished thinking block goes out whole, with its signature
                out.append(self._chunk({"thinking_blocks": [{**block, "index": self._thinking_count}]}))
                self._thinking_count += 1
        # unknown events carry nothing to send

    def _delta(self, index: int, delta: JSON, out: list[StreamChunk]) -> None:
        if "text" in delta:
            if delta["text"]:
                out.append(self._chunk({"content": delta["text"]}))
        elif "toolUse" in delta:
            piece = (delta["toolUse"] or {}).get("input") or ""
            if not piece:
                return
            if index in self._json_blocks:
                out.append(self._chunk({"content": piece}))
                return
            tool_index = self._tools.setdefault(index, len(self._tools))
            out.append(self._chunk(arguments_delta(tool_index, piece)))
        elif "reasoningContent" in delta:
            self._reasoning(index, delta["reasoningContent"] or {}, out)

    def _reasoning(self, index: int, rc: JSON, out: list[StreamChunk]) -> None:
        """``reasoningContent`` deltas: text, then its signature; or the redacted bytes."""
        if rc.get("redactedContent"):
            self._thinking[index] = {"type": "redacted_thinking", "data": str(rc["redactedContent"])}
            return
        block = self._thinking.setdefault(index, {"type": "thinking", "thinking": "", "signature": ""})
        if block["type"] != "thinking":
            return
        if rc.get("text"):
            block["thinking"] += str(rc["text"])
            out.append(self._chunk({"reasoning_content": rc["text"]}))
        if rc.get("signature"):
            block["signature"] += str(rc["signature"])
