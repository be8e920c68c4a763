"""Canned OpenAI response bodies (chat completions, stream chunks, errors, embeddings, legacy
completions) as a fake upstream sends them, and their SSE framing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

CREATED = 1700000000


def usage(prompt: int = 9, completion: int = 3, **extra: Any) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **extra}


def completion(
    content: str | None = "ok",
    *,
    model: str = "gpt-4o-mini",
    id: str = "chatcmpl-1",
    created: int = CREATED,
    finish: str = "stop",
    tokens: Mapping[str, Any] | None = None,
    **message: Any,
) -> dict[str, Any]:
    """A ``chat.completion`` with one choice; ``message`` adds to the assistant message
    (``tool_calls=[...]``, ``refusal=None``); ``tokens`` is its usage (default 9 + 3)."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": dict(tokens) if tokens is not None else usage(),
    }


def chunk(
    delta: Mapping[str, Any],
    finish: str | None = None,
    *,
    model: str = "gpt-4o-mini",
    id: str = "chatcmpl-1",
    created: int = CREATED,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(
    tokens: Mapping[str, Any], *, model: str = "gpt-4o-mini", id: str = "chatcmpl-1", created: int = CREATED
) -> dict[str, Any]:
    """The last chunk of a stream asked ``include_usage``: no choices, the usage."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": dict(tokens),
    }


def text_stream(
    pieces: Iterable[str],
    *,
    tokens: Mapping[str, Any] | None = None,
    finish: str = "stop",
    **ids: Any,
) -> list[dict[str, Any]]:
    """A streamed answer: the role chunk, one chunk a piece, the finish chunk, then the usage chunk
    when ``tokens`` is given. ``ids`` are :func:`chunk`'s ``model``, ``id`` and ``created``."""
    chunks = [chunk({"role": "assistant", "content": ""}, **ids)]
    chunks += [chunk({"content": p}, **ids) for p in pieces]
    chunks.append(chunk({}, finish, **ids))
    if tokens is not None:
        chunks.append(usage_chunk(tokens, **ids))
    return chunks


def sse_frame(chunk: Mapping[str, Any]) -> bytes:
    """One chunk as an SSE frame (``data: {...}`` and a blank line)."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def openai_sse(chunks: Iterable[Mapping[str, Any]], done: bool = True) -> list[bytes]:
    """OpenAI chunks as SSE frames, ending with ``[DONE]``."""
    frames = [sse_frame(c) for c in chunks]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return frames


def error(message: str, type: str = "server_error", **fields: Any) -> dict[str, Any]:
    """An OpenAI error body; ``fields`` adds ``param``, ``code``, ..."""
    return {"error": {"message": message, "type": type, **fields}}


def embeddings(
    n: int, vector: list[float], *, model: str = "text-embedding-3-small", prompt: int = 4
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(n)],
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


def text_completion(text: str, *, model: str = "gpt-3.5-turbo-instruct", id: str = "cmpl-1") -> dict[str, Any]:
    """A legacy ``text_completion``."""
    return {
        "id": id,
        "object": "text_completion",
        "created": 1,
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": usage(1, 1),
    }
