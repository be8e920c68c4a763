"""Signed extended thinking (Anthropic, Claude on Bedrock), carried whole through the gateway.

A canonical assistant message may carry ``thinking_blocks`` (litellm's name): whole blocks
``{"type": "thinking", "thinking": ..., "signature": ...}`` or ``{"type": "redacted_thinking",
"data": ...}``, which the provider wants back unmodified in a follow-up turn. A stream chunk's delta
carries each block once it is complete, with its ``"index"`` among the thinking blocks of the answer;
the thinking text itself streams as ``reasoning_content`` deltas. The Responses API carries the
blocks in a reasoning item's ``encrypted_content`` (:func:`encrypted_content`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from fluxway.canonical import JSON

THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})
_PREFIX = "fxthink1:"


def thinking_block(block: Any) -> JSON | None:
    """``block`` as a whole thinking block with only the fields a provider takes back, or ``None``."""
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "thinking" and isinstance(block.get("thinking"), str):
        signature = block.get("signature")
        return {"type": "thinking", "thinking": block["thinking"],
                "signature": signature if isinstance(signature, str) else ""}
    if kind == "redacted_thinking" and isinstance(block.get("data"), str) and block["data"]:
        return {"type": "redacted_thinking", "data": block["data"]}
    return None


def thinking_blocks(obj: Any) -> list[JSON]:
    """The whole thinking blocks a message or delta carries (``thinking_blocks``), in order."""
    blocks = obj.get("thinking_blocks") if isinstance(obj, dict) else None
    if not isinstance(blocks, list):
        return []
    if all(isinstance(b, dict) and isinstance(b.get("index"), int) for b in blocks):
        blocks = sorted(blocks, key=lambda b: b["index"])
    return [b for b in map(thinking_block, blocks) if b is not None]


def indexed_blocks(blocks: list[JSON], start: int = 0) -> list[JSON]:
    """``blocks`` as a stream delta carries them: each with its index among the answer's blocks."""
    return [{**b, "index": start + i} for i, b in enumerate(blocks)]


def encrypted_content(blocks: list[JSON]) -> str:
    """The blocks as a Responses reasoning item's opaque ``encrypted_content``."""
    raw = orjson.dumps([thinking_block(b) for b in blocks if thinking_block(b) is not None])
    return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def blocks_from_encrypted(value: Any) -> list[JSON]:
    """The blocks an ``encrypted_content`` of :func:`encrypted_content` holds; ``[]`` for anything
    else (another provider's encrypted reasoning, a damaged value)."""
    if not isinstance(value, str) or not value.startswith(_PREFIX):
        return []
    text = value[len(_PREFIX):]
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return []
    if not isinstance(decoded, list):
        return []
    return [b for b in map(thinking_block, decoded) if b is not None]
