"""Prices: the shipped model catalog (``fluxway/data/models.json``, :mod:`fluxway.catalog`, loaded
lazily) plus config overrides.

A price is an EXACT match: ``"<provider type>/<model>"`` in that type's block, then the model name
or one of its listed aliases in a first-party block (``gpt-4o-2024-08-06`` is priced because the
catalog lists it as an alias of ``gpt-4o``). Nothing matches by prefix: an unlisted snapshot, ``o1-pro``
(not ``o1``) and a fine-tune (not its base model) are unpriced. An unpriced model costs 0 and is
flagged (``PriceInfo.known`` is false); budgeted keys refuse such models unless
``budgets.allow_unpriced`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluxway.canonical import Price, Target, Usage
from fluxway.catalog import DEFAULT_MAX_OUTPUT_TOKENS, Catalog, ModelInfo
from fluxway.config import Config
from fluxway.policy.hooks import CallContext, Outcome, Slot
from fluxway.routing.plan import plan_fallback_chain
from fluxway.tokens import estimate_prompt_tokens

_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class PriceInfo:
    price: Price
    known: bool
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS


UNKNOWN = PriceInfo(Price(), known=False)


def cost_usd(price: Price, usage: Usage) -> float:
    """USD for one call's usage (cached prompt tokens at the cached rate when the price has one)."""
    cached = min(max(usage.cached_tokens, 0), max(usage.prompt_tokens, 0))
    uncached = max(usage.prompt_tokens, 0) - cached
    cached_rate = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    total = (
        uncached * price.input_per_mtok
        + cached * cached_rate
        + max(usage.completion_tokens, 0) * price.output_per_mtok
    )
    return total / 1_000_000


def price_of(info: ModelInfo) -> Price:
    """A catalog entry's price: per token, and per image / second of audio / million characters of
    speech for the pass-through endpoints (``policy/media_cost.py``)."""
    p = info.price or {}

    def opt(key: str) -> float | None:
        value = p.get(key)
        return None if value is None else float(value)

    return Price(float(p.get("input", 0.0)), float(p.get("output", 0.0)), opt("cached_input"),
                 per_image=opt("per_image"), per_audio_second=opt("per_second"), per_mchar=opt("per_1m_characters"))


class PriceTable:
    """Prices from the catalog (the shipped one by default). ``data`` may also be a flat table
    ``{"models": {"<type>/<model>" or "<model>": {"input", "output", "cached_input",
    "max_output_tokens"}}}``, looked up exactly the same way."""

    def __init__(self, data: Mapping[str, Any] | None = None, catalog: Catalog | None = None) -> None:
        if catalog is None:
            catalog = Catalog(_as_catalog(data) if data is not None else None)
        self.catalog = catalog
        self._cache: dict[tuple[str | None, str], PriceInfo] = {}

    def lookup(self, provider_type: str | None, model: str) -> PriceInfo:
        key = (provider_type, model)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        info = self._resolve(provider_type, model)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = info
        return info

    def _resolve(self, provider_type: str | None, model: str) -> PriceInfo:
        entry = self.catalog.find(provider_type, model)
        default_max = self.catalog.default_max_output_tokens
        if entry is None or not (entry.priced or entry.media_priced):
            return PriceInfo(Price(), known=False, max_output_tokens=default_max)
        return PriceInfo(price_of(entry), known=True, max_output_tokens=entry.max_output or default_max)


def _as_catalog(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A flat ``{"models": ...}`` table as a catalog: ``<type>/<model>`` keys in their type's block,
    bare names in a first-party (scope any) block."""
    if "providers" in data:
        return data
    blocks: dict[str, dict[str, Any]] = {"": {"scope": "any", "models": {}}}
    for key, row in (data.get("models") or {}).items():
        ptype, sep, name = str(key).partition("/")
        if not sep:
            ptype, name = "", str(key)
        block = blocks.setdefault(ptype, {"scope": "provider", "models": {}})
        price = {k: row[k] for k in ("input", "output", "cached_input") if row.get(k) is not None}
        block["models"][name] = {"kind": "chat", "price": price or None, "max_output": row.get("max_output_tokens")}
    return {"default_max_output_tokens": data.get("default_max_output_tokens"), "providers": blocks}


class Pricer:
    """Prices as configured: ``targets[].price`` overrides the table; knows provider types."""

    def __init__(self, cfg: Config, table: PriceTable | None = None) -> None:
        self._cfg = cfg
        self._models_by_name = {m.name: m for m in cfg.models}
        self.table = table or PriceTable()
        self._overrides: dict[tuple[str, str], Price] = {}
        for m in cfg.models:
            for t in m.targets:
                if t.price is not None:
                    self._overrides[(t.provider, t.model)] = t.price.to_price()
        self._worst: dict[str, PriceInfo] = {}

    def for_target(self, target: Target) -> PriceInfo:
        base = self._lookup(target.provider, target.model)
        price = target.price or self._overrides.get((target.provider, target.model))
        if price is not None:
            return PriceInfo(price, known=True, max_output_tokens=base.max_output_tokens)
        return base

    def _lookup(self, provider: str, model: str) -> PriceInfo:
        p = self._cfg.provider(provider)
        return self.table.lookup(p.type if p else None, model)

    def cost(self, target: Target | None, usage: Usage | None) -> tuple[float, bool]:
        """USD for a call and whether its price was known."""
        if target is None or usage is None:
            return 0.0, True
        info = self.for_target(target)
        return cost_usd(info.price, usage), info.known

    def worst_case(self, public_model: str) -> PriceInfo:
        """The most expensive price (and largest output cap) any target of a public model may cost."""
        hit = self._worst.get(public_model)
        if hit is not None:
            return hit
        targets = self._targets_of(public_model)
        if not targets:
            info = UNKNOWN
        else:
            infos = [self.for_target(t) for t in targets]
            info = PriceInfo(
                Price(
                    max(i.price.input_per_mtok for i in infos),
                    max(i.price.output_per_mtok for i in infos),
                ),
                known=all(i.known for i in infos),
                max_output_tokens=max(i.max_output_tokens for i in infos),
            )
        if len(self._worst) >= _CACHE_LIMIT:
            self._worst.clear()
        self._worst[public_model] = info
        return info

    def _targets_of(self, public_model: str) -> list[Target]:
        models = self._models_by_name
        if public_model in models:
            chain = plan_fallback_chain(public_model, models)
            return [t.to_target() for name in chain for t in models[name].targets]
        provider, sep, model = public_model.partition("/")
        if sep and model and self._cfg.routing.allow_direct and self._cfg.provider(provider) is not None:
            return [Target(provider, model)]
        return []


@dataclass(slots=True)
class CallCost:
    usd: float
    known: bool  # the price was in the table or the config
    usage: Usage | None
    estimated: bool  # the usage was estimated (no usage from the upstream)


COST: Slot[CallCost] = Slot("pricing.cost")  # one call's cost, shared by the budget and usage hooks


def call_cost(pricer: Pricer, ctx: CallContext, outcome: Outcome) -> CallCost:
    """What one call cost; computed once per call and shared by the budget and usage hooks."""
    hit = ctx.get(COST)
    if hit is not None:
        return hit
    usage = outcome.usage
    estimated = bool(usage is not None and usage.estimated)
    if usage is None and outcome.status < 400 and outcome.target is not None:
        usage = Usage(prompt_tokens=estimate_prompt_tokens(ctx.request.body, outcome.target.model), estimated=True)
        estimated = True
    usd, known = pricer.cost(outcome.target, usage)
    out = CallCost(usd, known, usage, estimated)
    ctx.put(COST, out)
    return out
