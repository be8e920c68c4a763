"""The model catalog: prices, limits and capabilities of known models (``fluxway/data/models.json``).

The file holds one block per provider type, each naming where its figures come from (``source``:
the vendor's pricing page; ``via``, ``as_of``: what they were read from and when) and its models:
``kind`` (chat, completion, embedding, image, audio_transcription, audio_speech, rerank), ``price``
(USD per million tokens: input, output, cached_input, cache_write, batch_input, batch_output; per
unit: per_image, per_second, per_second_output, per_1m_characters; ``null`` when unverified),
``context``, ``max_output``, ``capabilities`` and ``aliases`` (dated snapshots with the same
figures). A block's ``defaults`` are the models docs/providers.md names for its preset.

Lookups are exact, never a prefix guess: ``<type>/<model>`` in the type's block, then the model
name (or alias) in a ``scope: any`` block (first-party names such as ``gpt-4o`` are the same model
on OpenAI, a compatible proxy or OpenRouter), then, for namespaced names, the same two lookups of
the name without a Bedrock region prefix (``us.``, ``eu.``, ...) or vendor path
(``openai/gpt-4o`` -> ``gpt-4o``). ``gpt-4o-2024-08-06`` is priced because the catalog lists it
as an alias, ``o1-pro`` is not ``o1`` and a fine-tune is not its base model.

Loaded on first use, not at import (the gateway's import cost is tested).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

DEFAULT_MAX_OUTPUT_TOKENS = 4096
# The capability flags an entry (or a target's override in the config) may carry.
CAPABILITIES = ("tools", "vision", "json_schema", "reasoning", "audio", "embeddings", "prompt_caching", "pdf",
                "web_search", "image_generation", "rerank")
KINDS = ("chat", "completion", "embedding", "image", "audio_transcription", "audio_speech", "rerank")
# Price fields per million tokens, and per unit.
TOKEN_PRICES = ("input", "output", "cached_input", "cache_write", "batch_input", "batch_output")
UNIT_PRICES = ("per_image", "per_second", "per_second_output", "per_1m_characters")
# Bedrock cross-region inference profiles: "us.anthropic.claude-..." is billed as "anthropic.claude-...".
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.(?=[a-z0-9-]+\.)")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One catalog entry."""

    provider: str  # the provider type whose block lists it
    name: str
    kind: str
    price: Mapping[str, float] | None  # None: unpriced
    context: int | None = None
    max_output: int | None = None
    capabilities: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()
    deprecated: str | None = None
    source: str | None = None

    @property
    def priced(self) -> bool:
        """Has a per-token price (what chat, completion and embedding calls are billed by)."""
        return self.price is not None and "input" in self.price

    @property
    def media_priced(self) -> bool:
        """Has a per-unit price (images, audio seconds, speech characters)."""
        return self.price is not None and any(k in self.price for k in ("per_image", "per_second", "per_1m_characters"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "model": self.name, "kind": self.kind,
                               "price": dict(self.price) if self.price is not None else None}
        if self.context is not None:
            out["context_window"] = self.context
        if self.max_output is not None:
            out["max_output_tokens"] = self.max_output
        out["capabilities"] = sorted(self.capabilities)
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.deprecated:
            out["deprecated"] = self.deprecated
        if self.source:
            out["source"] = self.source
        return out


def load_shipped() -> dict[str, Any]:
    """The catalog file shipped in the package, parsed."""
    text = resources.files("fluxway").joinpath("data/models.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


class Catalog:
    """The catalog, indexed for exact lookups; the shipped file is read on first use."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = data
        self._entries: list[ModelInfo] | None = None
        self._by_type: dict[str, ModelInfo] = {}  # "<type>/<name or alias>", lower case
        self._by_name: dict[str, ModelInfo] = {}  # "<name or alias>" of scope-any blocks
        self._blocks: dict[str, Mapping[str, Any]] = {}
        self.default_max_output_tokens = DEFAULT_MAX_OUTPUT_TOKENS

    def _load(self) -> list[ModelInfo]:
        if self._entries is not None:
            return self._entries
        data = self._data if self._data is not None else load_shipped()
        self.default_max_output_tokens = int(data.get("default_max_output_tokens") or DEFAULT_MAX_OUTPUT_TOKENS)
        entries: list[ModelInfo] = []
        for ptype, block in (data.get("providers") or {}).items():
            self._blocks[ptype] = block
            scope_any = block.get("scope") == "any"
            for name, row in (block.get("models") or {}).items():
                info = _entry(ptype, name, row, block.get("source"))
                entries.append(info)
                for key in (name, *info.aliases):
                    self._by_type.setdefault(f"{ptype}/{key}".lower(), info)
                    if scope_any:
                        self._by_name.setdefault(key.lower(), info)
        self._entries = entries
        return entries

    def entries(self) -> list[ModelInfo]:
        return list(self._load())

    def blocks(self) -> dict[str, Mapping[str, Any]]:
        """Provider type -> its block (source, as_of, defaults, ...)."""
        self._load()
        return dict(self._blocks)

    def find(self, provider_type: str | None, model: str) -> ModelInfo | None:
        """The entry for ``model`` on a provider of ``provider_type``: exact names and aliases only."""
        self._load()
        m = model.lower()
        names = [m]
        unregioned = _REGION_PREFIX.sub("", m)
        if unregioned != m:
            names.append(unregioned)
        if "/" in m:
            names.append(m.rsplit("/", 1)[-1])
        ptype = provider_type.lower() if provider_type else None
        for name in names:
            if ptype is not None:
                hit = self._by_type.get(f"{ptype}/{name}")
                if hit is not None:
                    return hit
            hit = self._by_name.get(name)
            if hit is not None:
                return hit
        return None

    def search(self, text: str | None = None, provider: str | None = None) -> list[ModelInfo]:
        """Entries whose provider is ``provider`` and whose name, alias, kind or a capability
        contains ``text`` (case-insensitive), in file order."""
        needle = (text or "").lower()
        out = []
        for e in self._load():
            if provider is not None and e.provider != provider:
                continue
            if needle and not _matches(e, needle):
                continue
            out.append(e)
        return out


def _matches(e: ModelInfo, needle: str) -> bool:
    haystack: Iterable[str] = (e.name, *e.aliases, e.kind, *e.capabilities)
    return any(needle in s.lower() for s in haystack)


def _entry(ptype: str, name: str, row: Mapping[str, Any], source: Any) -> ModelInfo:
    price = row.get("price")
    context = row.get("context")
    max_output = row.get("max_output")
    return ModelInfo(
        provider=ptype,
        name=name,
        kind=str(row.get("kind") or "chat"),
        price=None if price is None else {k: float(v) for k, v in price.items()},
        context=int(context) if context is not None else None,
        max_output=int(max_output) if max_output is not None else None,
        capabilities=frozenset(row.get("capabilities") or ()),
        aliases=tuple(row.get("aliases") or ()),
        deprecated=row.get("deprecated"),
        source=source if isinstance(source, str) else None,
    )
