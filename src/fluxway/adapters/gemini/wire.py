"""Gemini wire details several modules read: fields under camelCase or snake_case names, and the
``call_...`` ids the adapter makes up for function calls (which carry no ids on Gemini's side) with the
call's thought signature folded in, so that a Gemini 3 model gets it back with the tool result."""

from __future__ import annotations

import uuid
from typing import Any

# A tool call id is "call_<random>" or "call_<random>__thought__<signature>".
SIGNATURE_SEPARATOR = "__thought__"


def pick(d: Any, camel: str, snake: str) -> Any:
    """A field under its camelCase or snake_case name."""
    if not isinstance(d, dict):
        return None
    v = d.get(camel)
    return d.get(snake) if v is None else v


def make_call_id(signature: str | None = None) -> str:
    base = "call_" + uuid.uuid4().hex[:24]
    return base + SIGNATURE_SEPARATOR + signature if signature else base


def signature_of(call_id: str) -> str | None:
    _, sep, sig = call_id.partition(SIGNATURE_SEPARATOR)
    return sig if sep and sig else None

