"""Prices: the shipped table (``fluxway/data/prices.json``, loaded lazily) plus config overrides.

A price is looked up by ``"<provider type>/<model>"``, then by the model alone; a snapshot of a listed
model (``gpt-4o-2024-08-06``, ``claude-sonnet-4-5-20250929``, ``mistral-large-latest``,
``...-v1:0``) resolves to it. Nothing else matches by prefix: ``o1-pro`` is not ``o1``, and a
fine-tune name is not its base model. An unknown model costs 0 and is flagged (``PriceInfo.known``
is false); budgeted keys refuse such models unless ``budgets.allow_unpriced`` is set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fluxway.canonical import Price, Target, Usage
from fluxway.config import Config
from fluxway.policy.hooks import CallContext, Outcome, Slot
from fluxway.routing.plan import plan_fallback_chain
from fluxway.tokens import estimate_prompt_tokens

DEFAULT_MAX_OUTPUT_TOKENS = 4096
# What may follow a listed name and still be the same model: release dates, "-latest", "-001",
# Bedrock's "-v1:0". Anything else ("-pro", "-mini", ":ft-...") is a different model.
_SNAPSHOT = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3}|latest))*(?:-v\d+(?:[.:]\d+)*)?(?::\d+)?")
# Bedrock-style ids: "us.anthropic.claude-sonnet-4-5-20250929-v1:0" -> "claude-sonnet-4-5-20250929-v1:0".
_VENDOR_DOT = re.compile(
    r"^(?:(?:us|eu|apac|global|us-gov|jp|au)\.)?(?:anthropic|meta|amazon|mistral|cohere|ai21|deepseek|openai)\."
)
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


class PriceTable:
    """The price table; the shipped JSON is read on first lookup, not at import."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = data
        self._index: dict[str, PriceInfo] | None = None
        self._default_max = DEFAULT_MAX_OUTPUT_TOKENS
        self._cache: dict[tuple[str | None, str], PriceInfo] = {}

    def _load(self) -> dict[str, PriceInfo]:
        if self._index is not None:
            return self._index
        data = self._data
        if data is None:
            text = resources.files("fluxway").joinpath("data/prices.json").read_text(encoding="utf-8")
            data = json.loads(text)
        self._default_max = int(data.get("default_max_output_tokens") or DEFAULT_MAX_OUTPUT_TOKENS)
        index: dict[str, PriceInfo] = {}
        for name, row in (data.get("models") or {}).items():
            cached = row.get("cached_input")
            price = Price(
                float(row.get("input", 0.0)), float(row.get("output", 0.0)), None if cached is None else float(cached)
            )
            index[str(name).lower()] = PriceInfo(
                price,
                known=True,
                max_output_tokens=int(row.get("max_output_tokens") or self._default_max),
            )
        self._index = index
        return index

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
        index = self._load()
        m = model.lower()
        names: list[str] = []
        if provider_type:
            names.append(f"{provider_type.lower()}/{m}")
        names.append(m)
        stripped = _VENDOR_DOT.sub("", m.rsplit("/", 1)[-1])
        if stripped not in names:
            names.append(stripped)
        for name in names:
            exact = index.get(name)
            if exact is not None:
                return exact
        for name in names:
            best: str | None = None
            for k in index:
                if len(k) < len(name) and name.startswith(k) and _SNAPSHOT.fullmatch(name, len(k)) and (
                    best is None or len(k) > len(best)
                ):
                    best = k
            if best is not None:
                return index[best]
        return PriceInfo(Price(), known=False, max_output_tokens=self._default_max)


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
