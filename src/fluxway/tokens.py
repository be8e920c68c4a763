"""Token counts Fluxway computes itself, when an upstream reports none or before a call runs: the one
place for them.

Counts come from real BPE tokenizers shipped inside the ``quicktok-v1`` package (nothing downloads
at run time; token ids byte-identical to tiktoken's): OpenAI's ``o200k_base`` and ``cl100k_base``,
Llama 3's and Qwen's. OpenAI-family models are counted exactly the way OpenAI bills chat prompts (the
per-message and per-tool framing of OpenAI's cookbook, "How to count tokens with tiktoken"), so those
counts are *exact*. Llama 3 and Qwen text is counted with its own vocabulary but their chat templates
only approximately; models of other families (Claude, Gemini, Mistral, ...), whose tokenizers ship in
no package, are counted with ``o200k_base``. Callers that must not undercount (budgets, limits) add
:data:`APPROX_MARGIN` to a count that is not exact.

A vocabulary loads on first use (0.3-0.8 s, 30-65 MB); :func:`warm` loads the ones a config's models
need at start-up, in a thread, so no call waits for one. Importing this module costs nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

O200K = "o200k_base"
CL100K = "cl100k_base"
LLAMA3 = "llama3"
QWEN = "qwen3"


class _Vocabulary(Protocol):
    def count(self, text: str) -> int: ...

# Other families' tokenizers split text into up to about a quarter more tokens than o200k_base (Claude,
# Llama 2, Mistral): what a worst-case estimate adds for a model Fluxway cannot count exactly.
APPROX_MARGIN = 1.25

# OpenAI chat framing (cookbook): every message costs 3 tokens plus 1 for a name; every reply is primed
# with 3; tools per the cookbook's formula for gpt-4o (gpt-4 and gpt-3.5: 10 per function, not 7).
_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3
_FUNC_INIT = {O200K: 7, CL100K: 10}
_PROP_INIT = 3
_PROP_KEY = 3
_ENUM_INIT = -3
_ENUM_ITEM = 3
_FUNC_END = 12
# An image's tokens are not in its URL: OpenAI bills a low-detail image 85 tokens, a 1024x1024
# high-detail one 765; an estimate takes the latter.
_IMAGE_TOKENS = 765
_CL100K_PREFIXES = ("gpt-4-", "gpt-3.5", "gpt-35", "text-embedding-", "text-davinci", "davinci", "babbage")
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-", "o1", "o3", "o4", "gpt-oss", "codex")
_LLAMA3_MARKS = ("llama-3", "llama3", "llama-v3")
_QWEN_MARKS = ("qwen2", "qwen-2", "qwen3", "qwen-3", "qwq")


def encoding_for(model: str) -> tuple[str, bool]:
    """The vocabulary to count ``model``'s tokens with, and whether the count is exact (an OpenAI model)."""
    name = model.rsplit("/", 1)[-1].lower()  # "openai/gpt-4o", "meta-llama/Llama-3.1-8B"
    if name.startswith(_O200K_PREFIXES):
        return O200K, True
    if name == "gpt-4" or name.startswith(_CL100K_PREFIXES):
        return CL100K, True
    if any(mark in name for mark in _LLAMA3_MARKS):
        return LLAMA3, False
    if any(mark in name for mark in _QWEN_MARKS):
        return QWEN, False
    return O200K, False


@functools.cache
def _vocabulary(name: str) -> _Vocabulary:
    # Read-only data loaded once per process, on first use; quicktok is imported only then.
    import quicktok

    vocabulary: _Vocabulary = quicktok.get_encoding(name)
    return vocabulary


def warm(models: Iterable[str] = ()) -> None:
    """Load the vocabularies ``models`` are counted with (start-up, in a thread): no call waits for one."""
    for name in sorted({encoding_for(m)[0] for m in models} or {O200K}):
        _vocabulary(name)


def count_text(text: str, encoding: str = O200K) -> int:
    """Tokens in ``text`` (special-token markers in it count as plain text)."""
    if not text:
        return 0
    try:
        return _vocabulary(encoding).count(text)
    except TypeError:  # a lone surrogate: not UTF-8, counted as the replacement character
        return _vocabulary(encoding).count(text.encode("utf-8", "replace").decode("utf-8"))


def _content_tokens(content: Any, encoding: str) -> int:
    if isinstance(content, str):
        return count_text(content, encoding)
    if not isinstance(content, list):
        return 0
    n = 0
    for part in content:
        if isinstance(part, str):
            n += count_text(part, encoding)
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind in ("image_url", "input_image", "image"):
                n += _IMAGE_TOKENS
            else:
                for key in ("text", "refusal", "input_text"):
                    value = part.get(key)
                    if isinstance(value, str):
                        n += count_text(value, encoding)
    return n


def _message_tokens(message: Any, encoding: str) -> int:
    if not isinstance(message, dict):
        return 0
    n = _PER_MESSAGE
    for key, value in message.items():
        if key == "content":
            n += _content_tokens(value, encoding)
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    n += count_text(str(fn.get("name") or ""), encoding)
                    n += count_text(str(fn.get("arguments") or ""), encoding)
        elif isinstance(value, str):  # role, name, tool_call_id
            n += count_text(value, encoding)
            if key == "name":
                n += _PER_NAME
    return n


def _tools_tokens(tools: Any, encoding: str) -> int:
    """The cookbook's count for function definitions (exact for gpt-4o and gpt-4 with flat parameters)."""
    if not isinstance(tools, list) or not tools:
        return 0
    n = 0
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict):
            continue
        n += _FUNC_INIT[encoding]
        desc = str(fn.get("description") or "").removesuffix(".")
        n += count_text(f"{fn.get('name') or ''}:{desc}", encoding)
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        if isinstance(props, dict) and props:
            n += _PROP_INIT
            for key, prop in props.items():
                n += _PROP_KEY
                if not isinstance(prop, dict):
                    continue
                enum = prop.get("enum")
                if isinstance(enum, list):
                    n += _ENUM_INIT
                    for item in enum:
                        n += _ENUM_ITEM + count_text(str(item), encoding)
                p_desc = str(prop.get("description") or "").removesuffix(".")
                n += count_text(f"{key}:{prop.get('type') or ''}:{p_desc}", encoding)
                # Nested schemas are outside the cookbook's formula: their JSON text stands in.
                for nested in ("properties", "items", "anyOf", "oneOf"):
                    if nested in prop:
                        n += count_text(str(prop[nested]), encoding)
    return n + _FUNC_END


def _texts_tokens(value: Any, encoding: str) -> int:
    if isinstance(value, str):
        return count_text(value, encoding)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):  # a pre-tokenized prompt or input
            return len(value)
        return sum(_texts_tokens(v, encoding) for v in value)
    return 0


def prompt_tokens(body: Mapping[str, Any], model: str) -> tuple[int, bool]:
    """Prompt tokens of an OpenAI-shaped body (chat ``messages``, completions ``prompt``, embeddings
    ``input``) for ``model``, and whether the count is exact (else it is ``o200k_base``'s)."""
    encoding, exact = encoding_for(model)
    messages = body.get("messages")
    if isinstance(messages, list):
        n = sum(_message_tokens(m, encoding) for m in messages) + _REPLY_PRIMING
        n += _tools_tokens(body.get("tools"), encoding)
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and "json_schema" in fmt:
            n += count_text(str(fmt["json_schema"]), encoding)
        return n, exact
    value = body.get("prompt") if "prompt" in body else body.get("input")
    return max(1, _texts_tokens(value, encoding)), exact


def estimate_prompt_tokens(body: Mapping[str, Any], model: str) -> int:
    """The prompt's tokens as Fluxway counts them (see :func:`prompt_tokens`), at least 1."""
    return max(1, prompt_tokens(body, model)[0])


def worst_case_prompt_tokens(body: Mapping[str, Any], model: str) -> int:
    """An upper bound on the prompt's tokens for a reservation: the count, plus :data:`APPROX_MARGIN`
    when the model's own tokenizer is not available."""
    n, exact = prompt_tokens(body, model)
    return max(1, n if exact else math.ceil(n * APPROX_MARGIN))


def completion_tokens(texts: Iterable[str], model: str) -> int:
    """Tokens of generated text (a stream's deltas, joined before counting)."""
    return count_text("".join(texts), encoding_for(model)[0])
