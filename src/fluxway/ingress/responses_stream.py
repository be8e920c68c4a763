"""Canonical stream chunks -> the Responses API's event stream (``response.created`` ...
``response.completed``), each event with its ``sequence_number``, as the official SDKs' stream
helpers accumulate them: every output item is announced (``output_item.added``) before its deltas and
closed (``output_item.done``) before ``response.completed``, whose response carries the full output
and usage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from fluxway.canonical import JSON, StreamChunk, Usage
from fluxway.errors import GatewayError
from fluxway.ingress.responses_object import (
    build_response,
    finish_status,
    function_call_item,
    mcp_call_item,
    mcp_list_tools_item,
    message_item,
    reasoning_item,
    reasoning_text,
    text_part,
    usage_object,
)
from fluxway.ingress.responses_request import ResponsesCall, new_id
from fluxway.sse import encode
from fluxway.thinking import thinking_blocks


class _Call:
    __slots__ = ("arguments", "call_id", "id", "name", "output_index")

    def __init__(self, output_index: int, call_id: str, name: str) -> None:
        self.output_index = output_index
        self.id = new_id("fc")
        self.call_id = call_id
        self.name = name
        self.arguments = ""


class ResponsesStreamEncoder:
    """One stream's events; ``on_final`` receives the final Response object before its event is framed."""

    def __init__(self, call: ResponsesCall, response_id: str, created_at: int,
                 on_final: Callable[[JSON], None]) -> None:
        self._call = call
        self._id = response_id
        self._created = created_at
        self._on_final = on_final
        self._seq = 0
        self._started = False
        self._output: list[JSON | None] = []  # finished items by output index (None: still open)
        self._text_index: int | None = None  # output index of the open message
        self._text_id = ""
        self._text = ""
        self._refusal = False  # the open message's part is a refusal, not output_text
        self._reason_index: int | None = None  # output index of the open reasoning item
        self._reason_id = ""
        self._reason = ""
        self._reason_part = False  # the open reasoning item has its reasoning_text part
        self._reason_blocks: list[JSON] = []  # its signed thinking blocks
        self._reason_unsigned = ""  # its text streamed since the last block
        self._calls: dict[int, _Call] = {}  # chat tool-call index -> its open function call
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._mcp_index: dict[str, int] = {}  # open mcp_call items by id -> output index

    def _event(self, kind: str, payload: JSON) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **payload}
        self._seq += 1
        return encode(orjson.dumps(payload), kind)

    def _response(self, status: str, output: list[JSON], **extra: Any) -> JSON:
        return build_response(self._call, self._id, self._created, output, status, **extra)

    def _start(self) -> bytes:
        self._started = True
        snapshot = self._response("in_progress", [])
        return (self._event("response.created", {"response": snapshot})
                + self._event("response.in_progress", {"response": snapshot}))

    # -- items ------------------------------------------------------------------------------------

    def _part(self, text: str) -> JSON:
        return {"type": "refusal", "refusal": text} if self._refusal else text_part(text)

    def _open_reasoning(self) -> bytes:
        out = self._close_text() + self._close_calls()
        self._reason_index = len(self._output)
        self._output.append(None)
        self._reason_id = new_id("rs")
        self._reason = ""
        self._reason_part = False
        self._reason_blocks = []
        self._reason_unsigned = ""
        item = reasoning_item(self._reason_id, "", "in_progress")
        return out + self._event("response.output_item.added", {"output_index": self._reason_index, "item": item})

    def _reasoning(self, text: str) -> bytes:
        out = self._open_reasoning() if self._reason_index is None else b""
        if not self._reason_part:
            self._reason_part = True
            out += self._event("response.content_part.added", {
                "item_id": self._reason_id, "output_index": self._reason_index, "content_index": 0,
                "part": {"type": "reasoning_text", "text": ""},
            })
        self._reason += text
        self._reason_unsigned += text
        return out + self._event("response.reasoning_text.delta", {
            "item_id": self._reason_id, "output_index": self._reason_index, "content_index": 0, "delta": text,
        })

    def _thinking_block(self, block: JSON) -> bytes:
        """A complete signed block joins the open reasoning item (its text streamed before it, or
        streams now); the item's ``output_item.done`` carries the blocks as ``encrypted_content``."""
        out = self._open_reasoning() if self._reason_index is None else b""
        if block["type"] == "thinking" and block["thinking"] and not self._reason_unsigned:
            out += self._reasoning(block["thinking"])
        self._reason_unsigned = ""
        self._reason_blocks.append(block)
        return out

    def _close_reasoning(self) -> bytes:
        index = self._reason_index
        if index is None:
            return b""
        self._reason_index = None
        item = reasoning_item(self._reason_id, self._reason, "completed", self._reason_blocks)
        self._output[index] = item
        ids = {"item_id": self._reason_id, "output_index": index, "content_index": 0}
        out = b""
        if self._reason_part:
            out = (self._event("response.reasoning_text.done", {**ids, "text": self._reason})
                   + self._event("response.content_part.done", {**ids, "part": item["content"][0]}))
        return out + self._event("response.output_item.done", {"output_index": index, "item": item})

    def _open_text(self, refusal: bool) -> bytes:
        out = self._close_reasoning() + self._close_calls()
        self._text_index = len(self._output)
        self._output.append(None)
        self._text_id = new_id("msg")
        self._text = ""
        self._refusal = refusal
        item = message_item(self._text_id, [], "in_progress")
        out += self._event("response.output_item.added", {"output_index": self._text_index, "item": item})
        return out + self._event("response.content_part.added", {
            "item_id": self._text_id, "output_index": self._text_index, "content_index": 0, "part": self._part(""),
        })

    def _close_text(self) -> bytes:
        index = self._text_index
        if index is None:
            return b""
        self._text_index = None
        ids = {"item_id": self._text_id, "output_index": index, "content_index": 0}
        part = self._part(self._text)
        item = message_item(self._text_id, [part], "completed")
        self._output[index] = item
        done = (self._event("response.refusal.done", {**ids, "refusal": self._text}) if self._refusal else
                self._event("response.output_text.done", {**ids, "text": self._text, "logprobs": []}))
        return (done
                + self._event("response.content_part.done", {**ids, "part": part})
                + self._event("response.output_item.done", {"output_index": index, "item": item}))

    def _close_calls(self) -> bytes:
        out = b""
        for call in self._calls.values():
            item = function_call_item(call.id, call.call_id, call.name, call.arguments, "completed")
            self._output[call.output_index] = item
            out += self._event("response.function_call_arguments.done", {
                "item_id": call.id, "output_index": call.output_index, "name": call.name, "arguments": call.arguments,
            })
            out += self._event("response.output_item.done", {"output_index": call.output_index, "item": item})
        self._calls.clear()
        return out

    def _tool_call(self, delta: JSON) -> bytes:
        out = b""
        position = delta.get("index")
        key = position if isinstance(position, int) else (
            len(self._calls) if delta.get("id") or not self._calls else next(reversed(self._calls))
        )
        fn = delta.get("function") if isinstance(delta.get("function"), dict) else {}
        assert isinstance(fn, dict)
        call = self._calls.get(key)
        if call is None:
            out += self._close_reasoning() + self._close_text()
            call = _Call(len(self._output), str(delta.get("id") or new_id("call")), str(fn.get("name") or ""))
            self._output.append(None)
            self._calls[key] = call
            item = function_call_item(call.id, call.call_id, call.name, "", "in_progress")
            out += self._event("response.output_item.added", {"output_index": call.output_index, "item": item})
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            call.arguments += args
            out += self._event("response.function_call_arguments.delta", {
                "item_id": call.id, "output_index": call.output_index, "delta": args,
            })
        return out

    # -- the encoder protocol ---------------------------------------------------------------------

    def chunk(self, chunk: StreamChunk) -> bytes:
        data = chunk.data
        out = b"" if self._started else self._start()
        usage = data.get("usage")
        if isinstance(usage, dict) and usage:
            self._usage = Usage.from_openai(usage)
        choices = data.get("choices")
        if not isinstance(choices, list):
            return out
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index"):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                thought = reasoning_text(delta)
                if thought:
                    out += self._reasoning(thought)
                for block in thinking_blocks(delta):
                    out += self._thinking_block(block)
                text = delta.get("content")
                refusing = False
                if not isinstance(text, str) or not text:
                    refusal = delta.get("refusal")
                    text = refusal if isinstance(refusal, str) else ""
                    refusing = True
                if text:
                    if self._text_index is not None and self._refusal != refusing:
                        out += self._close_text()
                    if self._text_index is None:
                        out += self._open_text(refusing)
                    self._text += text
                    ids = {"item_id": self._text_id, "output_index": self._text_index, "content_index": 0}
                    if refusing:
                        out += self._event("response.refusal.delta", {**ids, "delta": text})
                    else:
                        out += self._event("response.output_text.delta", {**ids, "delta": text, "logprobs": []})
                calls = delta.get("tool_calls")
                if isinstance(calls, list):
                    for c in calls:
                        if isinstance(c, dict):
                            out += self._tool_call(c)
            finish = choice.get("finish_reason")
            if finish:
                self._finish = finish
        return out

    # -- a tool loop's items (fluxway.mcp.loop) ----------------------------------------------------

    def begin(self) -> bytes:
        """``response.created`` and ``response.in_progress``, once."""
        return b"" if self._started else self._start()

    def _close_open(self) -> bytes:
        """Close the open reasoning, message and function call items (a tool loop's item comes next)."""
        return self._close_reasoning() + self._close_text() + self._close_calls()

    def mcp_list_tools(self, item_id: str, server_label: str, tools: list[Any]) -> bytes:
        out = self.begin() + self._close_open()
        index = len(self._output)
        item = mcp_list_tools_item(item_id, server_label, tools)
        self._output.append(item)
        ids = {"item_id": item_id, "output_index": index}
        return (out + self._event("response.output_item.added", {"output_index": index, "item": {**item, "tools": []}})
                + self._event("response.mcp_list_tools.in_progress", ids)
                + self._event("response.mcp_list_tools.completed", ids)
                + self._event("response.output_item.done", {"output_index": index, "item": item}))

    def mcp_call_started(self, call: Any) -> bytes:
        out = self.begin() + self._close_open()
        index = len(self._output)
        self._output.append(None)
        self._mcp_index[call.id] = index
        ids = {"item_id": call.id, "output_index": index}
        item = mcp_call_item(call, "in_progress")
        return (out + self._event("response.output_item.added", {"output_index": index, "item": item})
                + self._event("response.mcp_call.in_progress", ids)
                + self._event("response.mcp_call_arguments.delta", {**ids, "delta": call.arguments})
                + self._event("response.mcp_call_arguments.done", {**ids, "arguments": call.arguments}))

    def mcp_call_done(self, call: Any) -> bytes:
        index = self._mcp_index.pop(call.id, None)
        out = b""
        if index is None:  # never announced (a call left unrun)
            out = self.mcp_call_started(call)
            index = self._mcp_index.pop(call.id)
        item = mcp_call_item(call)
        self._output[index] = item
        ids = {"item_id": call.id, "output_index": index}
        kind = "response.mcp_call.completed" if item["status"] == "completed" else "response.mcp_call.failed"
        return (out + self._event(kind, ids)
                + self._event("response.output_item.done", {"output_index": index, "item": item}))

    def _settled(self) -> list[JSON]:
        return [item for item in self._output if item is not None]

    def finish(self, usage: Usage | None) -> bytes:
        out = (b"" if self._started else self._start()) + self._close_open()
        status, incomplete = finish_status(self._finish)
        final = self._response(status, self._settled(), usage=usage_object(usage or self._usage),
                               incomplete_details=incomplete)
        self._on_final(final)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": final})

    def error(self, err: GatewayError) -> bytes:
        out = b"" if self._started else self._start()
        code = "rate_limit_exceeded" if err.status == 429 else "server_error"
        failed = self._response("failed", self._settled(), usage=usage_object(self._usage),
                                error={"code": code, "message": err.message})
        out += self._event("error", {"code": err.code or code, "message": err.message, "param": err.param})
        return out + self._event("response.failed", {"response": failed})
