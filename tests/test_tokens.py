"""Fluxway's own token counts (fluxway/tokens.py) against counts the OpenAI API reported."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from fluxway import tokens

COOKBOOK = json.loads((Path(__file__).parent / "fixtures" / "tokens" / "openai_cookbook.json").read_text())
CASES = [(c["name"], c["body"], model, n) for c in COOKBOOK["cases"] for model, n in c["api_prompt_tokens"].items()]


@pytest.mark.parametrize(("name", "body", "model", "api_count"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_prompt_count_is_what_the_openai_api_billed(
    name: str, body: dict[str, Any], model: str, api_count: int
) -> None:
    assert tokens.prompt_tokens(body, model) == (api_count, True)


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        ("gpt-4o-mini", tokens.O200K, True),
        ("openai/gpt-4.1-nano", tokens.O200K, True),
        ("o3-mini", tokens.O200K, True),
        ("gpt-5", tokens.O200K, True),
        ("gpt-4", tokens.CL100K, True),
        ("gpt-4-turbo-2024-04-09", tokens.CL100K, True),
        ("gpt-35-turbo", tokens.CL100K, True),  # Azure's spelling
        ("text-embedding-3-small", tokens.CL100K, True),
        ("meta-llama/Llama-3.1-8B-Instruct", tokens.LLAMA3, False),
        ("llama3.2:3b", tokens.LLAMA3, False),  # Ollama's naming
        ("Qwen/Qwen2.5-7B-Instruct", tokens.QWEN, False),
        ("claude-sonnet-4-5", tokens.O200K, False),
        ("gemini-2.0-flash", tokens.O200K, False),
        ("smart", tokens.O200K, False),
    ],
)
def test_each_family_is_counted_with_its_vocabulary(model: str, encoding: str, exact: bool) -> None:
    assert tokens.encoding_for(model) == (encoding, exact)


def test_vocabularies_differ_where_the_families_do() -> None:
    text = "Fluxway routes every call to the right provider: 你好, мир! 1234567"
    counts = {e: tokens.count_text(text, e) for e in (tokens.O200K, tokens.CL100K, tokens.LLAMA3, tokens.QWEN)}
    assert counts[tokens.O200K] != counts[tokens.CL100K]
    assert all(0 < n < len(text) for n in counts.values())


def test_worst_case_adds_the_margin_only_where_the_count_is_not_exact() -> None:
    body = {"messages": [{"role": "user", "content": "one two three"}]}
    assert tokens.worst_case_prompt_tokens(body, "gpt-4o") == 10
    assert tokens.worst_case_prompt_tokens(body, "claude-sonnet-4-5") == math.ceil(10 * tokens.APPROX_MARGIN)


def test_other_shapes_and_hostile_text() -> None:
    assert tokens.prompt_tokens({"prompt": "one two three"}, "gpt-4o") == (3, True)
    assert tokens.prompt_tokens({"input": ["one two", "three"]}, "text-embedding-3-small") == (3, True)
    assert tokens.prompt_tokens({"input": [1, 2, 3, 4]}, "text-embedding-3-small") == (4, True)  # pre-tokenized
    assert tokens.count_text("a\ud800b") == tokens.count_text("a\ufffdb")  # a lone surrogate counts, no crash
    assert tokens.count_text("<|endoftext|>") > 1  # a special token's marker in text is plain text
    assert tokens.count_text("x" * 1_000_000) > 0
    image = {"role": "user", "content": [{"type": "text", "text": "one two three"}, {"type": "image_url"}]}
    assert tokens.prompt_tokens({"messages": [image]}, "gpt-4o")[0] == 10 + 765
    call = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]}
    assert tokens.prompt_tokens({"messages": [call]}, "gpt-4o")[0] > 7
    assert tokens.prompt_tokens({"messages": ["junk", 3, None]}, "gpt-4o") == (3, True)


def test_completion_count_joins_the_deltas_first() -> None:
    assert tokens.completion_tokens(["Hel", "lo the", "re!"], "gpt-4o") == tokens.count_text("Hello there!") == 3
