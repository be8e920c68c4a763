"""A mock model server that tells a fixed story, to test how a partial answer is continued.

``ContinuingUpstream(style)`` answers streamed chat requests with :data:`STORY` (one "token" per
word), at most ``max_tokens`` of them (then ``finish_reason: length``). Given a partial answer the
way its ``style`` continues one, it tells the rest of the story from there; given it any other way,
it starts the story again (as a real model does when the chat template closes the assistant turn):

============  ===========================================================================
``mistral``   a trailing assistant message with ``"prefix": true``
``vllm``      ``continue_final_message: true`` and ``add_generation_prompt: false``
``openai``    never (it restarts)
``llamacpp``  chat restarts (no usage in streams, like llama.cpp's server); ``POST /apply-template``
              renders the messages with a toy template and ``POST /v1/completions`` continues
              a prompt that is such a rendering followed by the start of the story
``anthropic`` ``POST /v1/messages``: a trailing assistant message (prefill), as Anthropic streams
============  ===========================================================================

Every request is recorded in ``requests``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from tests.support.openai_bodies import openai_sse
from tests.support.replies import json_reply, sse_reply
from tests.support.upstream import FakeUpstream, Recorded

STORY = " ".join(f"word{i}" for i in range(400))


def story_from(prefix: str) -> list[str]:
    """The story's tokens after ``prefix`` (from the start when ``prefix`` is not its beginning)."""
    rest = STORY[len(prefix) :] if prefix and STORY.startswith(prefix) else STORY
    return re.findall(r"\s*\S+\s*", rest)


def template(messages: list[dict[str, Any]]) -> str:
    return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


class ContinuingUpstream:
    def __init__(self, style: str, *, prompt_tokens: int = 7) -> None:
        self.style = style
        self.prompt_tokens = prompt_tokens
        self.up = FakeUpstream()

    @property
    def url(self) -> str:
        return self.up.url

    @property
    def requests(self) -> list[Recorded]:
        return self.up.requests

    async def __aenter__(self) -> ContinuingUpstream:
        if self.style == "anthropic":
            self.up.route("POST", "/v1/messages", self._messages)
        else:
            self.up.route("POST", "/v1/chat/completions", self._chat)
            self.up.route("POST", "/v1/completions", self._completions)
            self.up.route("POST", "/apply-template", self._template)
        await self.up.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.up.__aexit__(*exc)

    # -- OpenAI shape ----------------------------------------------------------------------------

    def _continues(self, body: dict[str, Any]) -> str:
        last = (body.get("messages") or [{}])[-1]
        if last.get("role") != "assistant":
            return ""
        if self.style == "mistral" and last.get("prefix") is True:
            return str(last["content"])
        if self.style == "vllm" and body.get("continue_final_message") and body.get("add_generation_prompt") is False:
            return str(last["content"])
        return ""

    def _pieces(self, body: dict[str, Any], prefix: str) -> tuple[list[str], str]:
        pieces = story_from(prefix)
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(limit, int) and len(pieces) > limit:
            return pieces[:limit], "length"
        return pieces, "stop"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        pieces, finish = self._pieces(body, self._continues(body))
        base = {"id": f"chatcmpl-{self.style}", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        frames = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        frames += [{**base, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
        frames.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if self.style != "llamacpp" and (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": len(pieces),
                "total_tokens": self.prompt_tokens + len(pieces),
            }
            frames.append({**base, "choices": [], "usage": usage})
        return await sse_reply(request, openai_sse(frames))

    async def _template(self, request: web.Request) -> web.Response:
        body = await request.json()
        return json_reply({"prompt": template(body["messages"])})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = str(body.get("prompt"))
        start = prompt.rfind("<assistant>")
        prefix = prompt[start + len("<assistant>") :] if start >= 0 and not prompt.endswith("</assistant>") else ""
        pieces, finish = self._pieces(body, prefix)
        base = {"id": "cmpl-llamacpp", "object": "text_completion", "created": 1, "model": body.get("model")}
        frames = [{**base, "choices": [{"index": 0, "text": p, "finish_reason": None}]} for p in pieces]
        frames.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": finish}]})
        return await sse_reply(request, openai_sse(frames))

    # -- Anthropic shape -------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        last = body["messages"][-1]
        prefill = last["content"] if last["role"] == "assistant" and isinstance(last["content"], str) else ""
        pieces, finish = self._pieces(body, prefill)
        frames: list[bytes] = []

        def event(name: str, data: dict[str, Any]) -> None:
            frames.append(f"event: {name}\ndata: ".encode() + orjson.dumps({"type": name, **data}) + b"\n\n")

        event(
            "message_start",
            {
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1},
                }
            },
        )
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        for p in pieces:
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}})
        event("content_block_stop", {"index": 0})
        reason = "max_tokens" if finish == "length" else "end_turn"
        event(
            "message_delta",
            {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": {"output_tokens": len(pieces)}},
        )
        event("message_stop", {})
        return await sse_reply(request, frames)
