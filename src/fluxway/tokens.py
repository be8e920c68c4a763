"""Token counts Fluxway estimates itself, when an upstream reports none: the one place for them.

About four characters a token over the request's text. (A real tokenizer per model family belongs
here too; none ships in a package the gateway can depend on without downloading at run time yet.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """About four characters a token over the request's text (messages, prompt or input)."""
    text = body.get("messages") or body.get("prompt") or body.get("input") or ""
    return max(1, len(str(text)) // 4)


def estimate_text_tokens(chars: int) -> int:
    """Tokens in ``chars`` characters of generated text (rounded up)."""
    return (chars + 3) // 4
