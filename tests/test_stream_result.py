"""A stream's chunks folded into the answer, and an answer replayed as chunks: signed thinking kept."""

from __future__ import annotations

from typing import Any

from fluxway.canonical import CanonicalResponse, StreamChunk
from fluxway.stream_result import assemble, replay_chunks

BLOCKS = [{"type": "thinking", "thinking": "ab", "signature": "SIG"}, {"type": "redacted_thinking", "data": "Zm9v"}]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> StreamChunk:
    return StreamChunk({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_assembled_answer_keeps_thinking_blocks() -> None:
    chunks = [_chunk({"role": "assistant", "content": ""}), _chunk({"reasoning_content": "a"}),
              _chunk({"reasoning_content": "b"}), _chunk({"thinking_blocks": [{**BLOCKS[0], "index": 0}]}),
              _chunk({"thinking_blocks": [{**BLOCKS[1], "index": 1}]}), _chunk({"content": "4"}), _chunk({}, "stop")]
    message = assemble(chunks).body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "4", "reasoning_content": "ab", "thinking_blocks": BLOCKS}


def test_replayed_answer_streams_each_block_after_its_text() -> None:
    message = {"role": "assistant", "content": "4", "reasoning_content": "ab", "thinking_blocks": BLOCKS}
    body = {"id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    chunks = replay_chunks(CanonicalResponse(body, None))
    deltas = [c.data["choices"][0]["delta"] for c in chunks]
    assert deltas[:4] == [{"role": "assistant", "content": ""}, {"reasoning_content": "ab"},
                          {"thinking_blocks": [{**BLOCKS[0], "index": 0}]},
                          {"thinking_blocks": [{**BLOCKS[1], "index": 1}]}]
    assert assemble(chunks).body["choices"][0]["message"] == message
