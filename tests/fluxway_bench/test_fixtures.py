"""fluxway_bench.fixtures: What the mock upstream answers and what the load sends.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

import json

import orjson

from fluxway.sse import SSEDecoder
from fluxway_bench import fixtures


def test_mock_json_is_an_openai_chat_completion() -> None:
    body = orjson.loads(fixtures.chat_completion_body())
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["total_tokens"] == 19


def test_mock_stream_is_five_chunks_then_done() -> None:
    dec = SSEDecoder()
    events = dec.feed(fixtures.sse_body()) + dec.flush()
    data = [e.data for e in events]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len(chunks) == 5
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Hello from the mock."


def test_chat_request_sets_stream_only_when_asked() -> None:
    assert "stream" not in fixtures.chat_request()
    assert fixtures.chat_request("m", stream=True) == {**fixtures.chat_request("m"), "stream": True}
