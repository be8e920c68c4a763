"""The OpenTelemetry GenAI semantic-convention vocabulary: operation and provider names, and the
attributes read from an OpenAI-shaped request or answer. Pure; values of the wrong type are skipped
(a client's body is input, never trusted to be well typed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluxway.canonical import Endpoint, Usage

AttrValue = str | bool | int | float | tuple[str, ...]

OPERATIONS: Mapping[Endpoint, str] = {
    Endpoint.CHAT: "chat",
    Endpoint.COMPLETIONS: "text_completion",
    Endpoint.EMBEDDINGS: "embeddings",
}

# Adapter types whose `gen_ai.provider.name` the conventions spell otherwise; others keep their type.
_PROVIDER_NAMES: Mapping[str, str] = {
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
}

# Request body field -> attribute, numbers only.
_NUMBERS: tuple[tuple[str, str], ...] = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
)


def provider_name(adapter_type: str) -> str:
    """``gen_ai.provider.name`` (and the older ``gen_ai.system``) for an adapter type."""
    return _PROVIDER_NAMES.get(adapter_type, adapter_type)


def request_attributes(body: Mapping[str, Any], out: dict[str, AttrValue]) -> None:
    """The request settings the conventions name, from an OpenAI-shaped body."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        out["gen_ai.request.max_tokens"] = max_tokens
    for field, attr in _NUMBERS:
        v = body.get(field)
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[attr] = v
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        out["gen_ai.request.seed"] = seed
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        out["gen_ai.request.choice.count"] = n
    stop = body.get("stop")
    if isinstance(stop, str):
        out["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, list) and stop and all(isinstance(s, str) for s in stop):
        out["gen_ai.request.stop_sequences"] = tuple(stop)


def response_attributes(body: Mapping[str, Any], out: dict[str, AttrValue]) -> None:
    """Response model, id and finish reasons from an OpenAI-shaped answer."""
    model = body.get("model")
    if isinstance(model, str) and model:
        out["gen_ai.response.model"] = model
    rid = body.get("id")
    if isinstance(rid, str) and rid:
        out["gen_ai.response.id"] = rid
    choices = body.get("choices")
    if isinstance(choices, list):
        reasons = tuple(r for c in choices if isinstance(c, dict) and isinstance(r := c.get("finish_reason"), str))
        if reasons:
            out["gen_ai.response.finish_reasons"] = reasons


def usage_attributes(usage: Usage, out: dict[str, AttrValue]) -> None:
    out["gen_ai.usage.input_tokens"] = usage.prompt_tokens
    out["gen_ai.usage.output_tokens"] = usage.completion_tokens
    if usage.cached_tokens:
        out["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    if usage.reasoning_tokens:
        out["fluxway.usage.reasoning_tokens"] = usage.reasoning_tokens
    if usage.estimated:
        out["fluxway.usage.estimated"] = True
