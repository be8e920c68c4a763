"""A stream and a whole answer, each made from the other, in canonical (OpenAI) shapes.

:class:`StreamAssembler` folds ``chat.completion.chunk`` (or ``text_completion``) chunks into the
``chat.completion`` a post hook sees for a stream (text, tool calls, finish reason, usage);
:func:`replay_chunks` turns a whole answer into the chunks a stream would have carried (a cached
answer served to a streaming caller).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fluxway.canonical import JSON, CanonicalResponse, StreamChunk, Usage
from fluxway.thinking import indexed_blocks, thinking_block, thinking_blocks


@dataclass(slots=True)
class _Choice:
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    thinking: dict[int, JSON] = field(default_factory=dict)  # index among thinking blocks -> block
    tools: dict[int, JSON] = field(default_factory=dict)  # tool call index -> {id, type, function}
    finish: str | None = None


class StreamAssembler:
    """Feed it every chunk of a stream; :meth:`response` is the answer they add up to."""

    def __init__(self, completions: bool = False) -> None:
        self._completions = completions
        self._head: JSON = {}
        self._choices: dict[int, _Choice] = {}
        self.usage: Usage | None = None

    def feed(self, chunk: StreamChunk) -> None:
        data = chunk.data
        if not self._head and data.get("id") is not None:
            self._head = {k: data[k] for k in ("id", "created", "model", "system_fingerprint") if k in data}
        u = data.get("usage")
        if u:
            self.usage = Usage.from_openai(u)
        for c in data.get("choices") or ():
            index = c.get("index", 0)
            choice = self._choices.get(index)
            if choice is None:
                choice = self._choices[index] = _Choice()
            delta = c.get("delta") or c
            text = delta.get("content") if not self._completions else c.get("text")
            if isinstance(text, str):
                choice.text.append(text)
            for key, parts in (("reasoning_content", choice.reasoning), ("refusal", choice.refusal)):
                value = delta.get(key)
                if isinstance(value, str):
                    parts.append(value)
            for block in delta.get("thinking_blocks") or ():
                whole = thinking_block(block)
                if whole is not None:
                    choice.thinking[block.get("index", len(choice.thinking))] = whole
            for call in delta.get("tool_calls") or ():
                self._tool_delta(choice, call)
            if c.get("finish_reason"):
                choice.finish = c["finish_reason"]

    @staticmethod
    def _tool_delta(choice: _Choice, call: Any) -> None:
        if not isinstance(call, dict):
            return
        i = call.get("index", len(choice.tools))
        fn = call.get("function") or {}
        have = choice.tools.get(i)
        if have is None:
            choice.tools[i] = {
                "id": call.get("id") or "",
                "type": call.get("type") or "function",
                "function": {"name": fn.get("name") or "", "arguments": fn.get("arguments") or ""},
            }
            return
        if call.get("id"):
            have["id"] = call["id"]
        if fn.get("name"):
            have["function"]["name"] += fn["name"]
        if fn.get("arguments"):
            have["function"]["arguments"] += fn["arguments"]

    def response(self) -> CanonicalResponse:
        """The ``chat.completion`` (or ``text_completion``) the chunks so far add up to."""
        choices: list[JSON] = []
        for index in sorted(self._choices):
            c = self._choices[index]
            if self._completions:
                choices.append({"index": index, "text": "".join(c.text), "finish_reason": c.finish})
                continue
            message: JSON = {"role": "assistant", "content": "".join(c.text) if c.text or not c.tools else None}
            if c.reasoning:
                message["reasoning_content"] = "".join(c.reasoning)
            if c.refusal:
                message["refusal"] = "".join(c.refusal)
            if c.thinking:
                message["thinking_blocks"] = [c.thinking[i] for i in sorted(c.thinking)]
            if c.tools:
                message["tool_calls"] = [c.tools[i] for i in sorted(c.tools)]
            choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": c.finish})
        body: JSON = {
            **self._head,
            "object": "text_completion" if self._completions else "chat.completion",
            "choices": choices,
        }
        if self.usage is not None:
            body["usage"] = self.usage.to_openai()
        return CanonicalResponse(body, self.usage)


def assemble(chunks: Iterable[StreamChunk], completions: bool = False) -> CanonicalResponse:
    """The whole answer ``chunks`` add up to."""
    asm = StreamAssembler(completions)
    for c in chunks:
        asm.feed(c)
    return asm.response()


def replay_chunks(resp: CanonicalResponse) -> list[StreamChunk]:
    """The chunks a stream of ``resp`` would carry: per choice its text (and reasoning, tool calls),
    then its finish reason. Usage is not among them: the stream encoder sends it at the end."""
    body = resp.body
    completions = body.get("object") == "text_completion"
    head: JSON = {k: body[k] for k in ("id", "created", "model", "system_fingerprint") if k in body}
    obj = "text_completion" if completions else "chat.completion.chunk"
    out: list[StreamChunk] = []

    def chunk(choice: JSON) -> None:
        out.append(StreamChunk({**head, "object": obj, "choices": [choice]}))

    for c in body.get("choices") or ():
        index = c.get("index", 0)
        if completions:
            chunk({"index": index, "text": c.get("text") or "", "finish_reason": None})
        else:
            message = c.get("message") or {}
            blocks = thinking_blocks(message)
            if blocks:
                chunk({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                       "finish_reason": None})
            for block in indexed_blocks(blocks):  # each block's text, then the block
                if block.get("thinking"):
                    chunk({"index": index, "delta": {"reasoning_content": block["thinking"]},
                           "logprobs": None, "finish_reason": None})
                chunk({"index": index, "delta": {"thinking_blocks": [block]}, "logprobs": None, "finish_reason": None})
            delta: JSON = {"content": message.get("content") or ""}
            if not blocks:
                delta = {"role": "assistant", **delta}
            for key in ("refusal",) if blocks else ("reasoning_content", "refusal"):
                if message.get(key):
                    delta[key] = message[key]
            chunk({"index": index, "delta": delta, "logprobs": None, "finish_reason": None})
            calls = message.get("tool_calls") or []
            if calls:
                deltas = [{"index": i, **call} for i, call in enumerate(calls)]
                chunk({"index": index, "delta": {"tool_calls": deltas}, "logprobs": None, "finish_reason": None})
        finish: JSON = {"index": index, "finish_reason": c.get("finish_reason") or "stop"}
        if completions:
            finish["text"] = ""
        else:
            finish["delta"] = {}
            finish["logprobs"] = None
        chunk(finish)
    return out
