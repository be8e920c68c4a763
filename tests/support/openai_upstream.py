"""The stock OpenAI-compatible upstream of the end-to-end tests: ``POST /v1/chat/completions``
answers "Hello there!" (9 + 3 tokens) as JSON or, when asked, as a stream; :func:`config` puts it
behind the public model ``smart`` as provider ``up`` (keys ``sk-a``, ``sk-b``).

:func:`spending_allowance` is a chat handler reporting as many output tokens as a call allows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from tests.support.openai_bodies import completion, openai_sse, text_stream, usage
from tests.support.replies import Handler, json_or_stream, json_reply
from tests.support.upstream import FakeUpstream

IDS: dict[str, Any] = {"id": "chatcmpl-123", "model": "gpt-4o-mini-2024-07-18"}
COMPLETION = completion("Hello there!", refusal=None, **IDS)
STREAM = text_stream(["Hel", "lo ", "there!"], tokens=usage(9, 3), **IDS)
chat_handler = json_or_stream(COMPLETION, openai_sse(STREAM))


def config(url: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": [{"name": "up", "type": "openai", "base_url": url + "/v1", "api_keys": ["sk-a", "sk-b"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
    }
    cfg.update(extra)
    return cfg


def spending_allowance(default: int, *, prompt: int, cap: int | None = None, finish: str = "stop") -> Handler:
    """Answers "ok" with the output tokens the call's ``max_completion_tokens`` / ``max_tokens``
    allow (``default`` when it sets none), at most ``cap``; ``prompt`` input tokens."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        out = body.get("max_completion_tokens") or body.get("max_tokens") or default
        out = out if cap is None else min(cap, out)
        return json_reply(completion(model=body["model"], id="c", created=1, finish=finish, tokens=usage(prompt, out)))

    return handle


@asynccontextmanager
async def openai_upstream() -> AsyncIterator[FakeUpstream]:
    """A :class:`FakeUpstream` serving :data:`COMPLETION` / :data:`STREAM` on the chat route."""
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat_handler)
        yield up
