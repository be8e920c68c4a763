"""The stock OpenAI-compatible upstream of the end-to-end tests: ``POST /v1/chat/completions``
answers "Hello there!" (9 + 3 tokens) as JSON or, when asked, as a stream; :func:`config` puts it
behind the public model ``smart`` as provider ``up`` (keys ``sk-a``, ``sk-b``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.support.openai_bodies import completion, openai_sse, text_stream, usage
from tests.support.replies import json_or_stream
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


@asynccontextmanager
async def openai_upstream() -> AsyncIterator[FakeUpstream]:
    """A :class:`FakeUpstream` serving :data:`COMPLETION` / :data:`STREAM` on the chat route."""
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat_handler)
        yield up
