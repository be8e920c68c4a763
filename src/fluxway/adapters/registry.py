"""Which adapter serves which provider ``type``: one line per adapter, imported lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fluxway.adapters.presets import PRESETS, Continuation

if TYPE_CHECKING:
    from fluxway.adapters.base import Adapter
    from fluxway.config import ProviderConfig

# type -> "module:Class"; every OpenAI-compatible preset maps to the compat adapter.
ADAPTERS: dict[str, str] = {
    "anthropic": "fluxway.adapters.anthropic:AnthropicAdapter",
    "gemini": "fluxway.adapters.gemini:GeminiAdapter",
    "bedrock": "fluxway.adapters.bedrock:BedrockAdapter",
    "azure": "fluxway.adapters.azure:AzureAdapter",
    "cohere": "fluxway.adapters.cohere:CohereAdapter",
}
_COMPAT = "fluxway.adapters.openai_compat:OpenAICompatAdapter"
# Types that authenticate without an API key in api_keys (or not at all).
_KEYLESS = frozenset({"bedrock"})


def is_known_type(type_: str) -> bool:
    return type_ in PRESETS or type_ in ADAPTERS


def requires_api_key(type_: str) -> bool:
    if type_ in PRESETS:
        return PRESETS[type_].key_required
    return type_ not in _KEYLESS


def create_adapter(cfg: ProviderConfig) -> Adapter:
    """Instantiate the adapter for one configured provider."""
    path = _COMPAT if cfg.type in PRESETS else ADAPTERS[cfg.type]
    module, _, cls = path.partition(":")
    factory = getattr(importlib.import_module(module), cls)
    adapter: Adapter = factory(cfg)
    return adapter


def continuation_kind(cfg: ProviderConfig, model: str) -> Continuation:
    """How a target of this provider continues a partial assistant answer: the provider's
    ``continuation`` setting, else its type's (Bedrock: prefill for Anthropic models only)."""
    if cfg.continuation is not None:
        return cfg.continuation
    if cfg.type in PRESETS:
        return PRESETS[cfg.type].continuation
    if cfg.type == "bedrock":
        lowered = model.lower()
        return "prefill" if "anthropic" in lowered or "claude" in lowered else "none"
    return "prefill" if cfg.type == "anthropic" else "none"  # Gemini, Cohere, Azure OpenAI: none
