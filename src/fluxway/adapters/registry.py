"""Which adapter serves which provider ``type``: one line per adapter, imported lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fluxway.adapters.presets import PRESETS
from fluxway.adapters.settings import NATIVE

if TYPE_CHECKING:
    from fluxway.adapters.base import Adapter
    from fluxway.adapters.settings import ProviderSettings

# type -> "module:Class"; every OpenAI-compatible preset maps to the compat adapter.
ADAPTERS: dict[str, str] = {
    "anthropic": "fluxway.adapters.anthropic:AnthropicAdapter",
    "gemini": "fluxway.adapters.gemini:GeminiAdapter",
    "bedrock": "fluxway.adapters.bedrock:BedrockAdapter",
    "azure": "fluxway.adapters.azure:AzureAdapter",
    "cohere": "fluxway.adapters.cohere:CohereAdapter",
    "vertex": "fluxway.adapters.vertex:VertexAdapter",
}
_COMPAT = "fluxway.adapters.openai_compat:OpenAICompatAdapter"


def is_known_type(type_: str) -> bool:
    return type_ in PRESETS or type_ in ADAPTERS


def requires_api_key(type_: str) -> bool:
    """Does a provider of this type need an entry in ``api_keys`` (its settings class says)?"""
    if type_ in PRESETS:
        return PRESETS[type_].key_required
    return NATIVE[type_].key_required


def create_adapter(cfg: ProviderSettings) -> Adapter:
    """Instantiate the adapter for one configured provider."""
    path = _COMPAT if cfg.type in PRESETS else ADAPTERS[cfg.type]
    module, _, cls = path.partition(":")
    factory = getattr(importlib.import_module(module), cls)
    adapter: Adapter = factory(cfg)
    return adapter
