"""Signed thinking blocks: what a message carries, and the Responses ``encrypted_content`` of them."""

from __future__ import annotations

import base64

from fluxway.thinking import blocks_from_encrypted, encrypted_content, indexed_blocks, thinking_blocks

BLOCKS = [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "redacted_thinking", "data": "Zm9v"}]


def test_blocks_are_whole_and_ordered_by_index() -> None:
    indexed = {"thinking_blocks": [{**BLOCKS[1], "index": 1}, {**BLOCKS[0], "index": 0, "cache_control": {}}]}
    assert thinking_blocks(indexed) == BLOCKS
    msg = {"thinking_blocks": [BLOCKS[0], {"type": "thinking"}, {"type": "redacted_thinking", "data": ""}, "junk",
                               {**BLOCKS[1], "extra": 1}]}
    assert thinking_blocks(msg) == BLOCKS
    assert thinking_blocks({"thinking_blocks": "x"}) == thinking_blocks(None) == []
    assert indexed_blocks(BLOCKS, 2) == [{**BLOCKS[0], "index": 2}, {**BLOCKS[1], "index": 3}]


def test_encrypted_content_round_trip() -> None:
    value = encrypted_content(BLOCKS)
    assert value.startswith("fxthink1:") and "=" not in value
    assert blocks_from_encrypted(value) == BLOCKS


def test_foreign_or_damaged_encrypted_content_holds_nothing() -> None:
    def enc(raw: bytes) -> str:
        return "fxthink1:" + base64.urlsafe_b64encode(raw).decode()

    for value in (None, 3, "", "gAAAAABo-openai", "fxthink1:", "fxthink1:%%%", "fxthink1:é", enc(b"not json"),
                  enc(b'{"a":1}'), enc(b'[1, "x", {"type": "thinking"}]')):
        assert blocks_from_encrypted(value) == [], value
