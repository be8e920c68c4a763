"""What the mock upstream answers and what the load generators send."""

from __future__ import annotations

import json
from typing import Any

BENCH_MODEL = "bench"
STREAM_MODEL = "bench-stream"
UPSTREAM_MODEL = "bench-model"
MASTER_KEY = "sk-bench-master-7f3c9a1e5b2d4f608e1a9c3b5d7f9e2a"
UPSTREAM_KEY = "sk-mock"
MARKER = "FLUXWAY_BENCH "


def chat_request(model: str = BENCH_MODEL, stream: bool = False) -> dict[str, Any]:
    """The small chat request every load generator posts."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return body


def chat_completion_body() -> bytes:
    """The fixed OpenAI ``chat.completion`` the mock upstream returns."""
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": UPSTREAM_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        "system_fingerprint": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def sse_frames() -> list[bytes]:
    """Five ``chat.completion.chunk`` events then ``[DONE]``, each a complete SSE frame."""
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": "Hello"}, None),
        ({"content": " from"}, None),
        ({"content": " the"}, None),
        ({"content": " mock."}, None),
        ({}, "stop"),
    ]
    frames = []
    for delta, finish in deltas:
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": UPSTREAM_MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        frames.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    return frames


def sse_body() -> bytes:
    return b"".join(sse_frames())
