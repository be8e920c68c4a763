"""Routing plans: which targets to try for a public model, in which order.

Everything here is a pure function of (route, health snapshot, planner state, now). The one mutable
input is the :class:`PlannerState` the executor owns: the smooth weighted round-robin counters and the
random generator, so that a seeded generator replays the same decisions.

A plan is built in three tiers:

1. usable targets (breaker closed, or half-open with a free probe slot; not cooling down), the first
   chosen by the route's strategy, the rest in the strategy's order;
2. cooling targets (rate-limited, overloaded with retry-after, or every key unusable), soonest to
   recover first: a last resort;
3. blocked targets (breaker open, or half-open with its probes taken) are left out, unless nothing
   else is left: then the one that recovers soonest, alone. (The executor must ``acquire`` it with
   ``force=True``: its breaker still refuses ordinary requests.)

Strategies choose the first target:

* ``weighted``: smooth weighted round-robin (nginx) over usable targets with weight > 0; the rest by
  descending weight. Weight 0 marks a standby target, used only after the others.
* ``fallback``: config order.
* ``latency``: the lowest EWMA time to first byte; with probability ``state.explore`` a target with
  no or stale (older than ``state.stale_after_s``) samples instead, chosen at random. Untried targets
  rank after measured ones.
* ``least-busy``: the fewest requests in flight; ties shared by smooth weighted round-robin.
* ``cost``: the lowest input + output price per million tokens (the target's own price, else
  ``price_of(target)``, else unknown = +inf); ties shared by smooth weighted round-robin.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fluxway.canonical import STRATEGIES, Price, Target
from fluxway.routing.health_views import HealthSnapshot, TargetHealth

PriceLookup = Callable[[Target], Price | None]


class RouteLike(Protocol):
    """What the planner needs of a route (the executor's ``Route`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def strategy(self) -> str: ...

    @property
    def targets(self) -> Sequence[Target]: ...


class HasFallbacks(Protocol):
    @property
    def fallbacks(self) -> Sequence[str]: ...


class HasContextFallback(Protocol):
    @property
    def context_fallback(self) -> str | None: ...


@dataclass(slots=True)
class _Swrr:
    targets: tuple[Target, ...]
    current: list[float]


@dataclass(slots=True)
class PlannerState:
    """The planner's memory, owned by the executor (one per runtime)."""

    rng: random.Random = field(default_factory=random.Random)
    explore: float = 0.05  # latency strategy: share of picks spent on untried or stale targets
    stale_after_s: float = 60.0  # latency samples older than this make a target worth exploring
    swrr: dict[str, _Swrr] = field(default_factory=dict, init=False, repr=False)


def _swrr_pick(state: PlannerState, route: RouteLike, candidates: Sequence[int]) -> int | None:
    """Nginx's smooth weighted round-robin among ``candidates`` (indices into route.targets) of weight > 0.

    Over any run of picks with a fixed candidate set and integer weights summing to W, every W
    consecutive picks hold each candidate exactly weight times, spread as evenly as possible.
    """
    targets = route.targets
    live = [i for i in candidates if targets[i].weight > 0]
    if not live:
        return None
    if len(live) == 1:  # exactly what the algorithm would do (+w then -w), without keeping state
        return live[0]
    entry = state.swrr.get(route.name)
    if entry is None or (entry.targets is not targets and entry.targets != tuple(targets)):
        entry = state.swrr[route.name] = _Swrr(tuple(targets), [0.0] * len(targets))
    current = entry.current
    total = 0.0
    best = live[0]
    for i in live:
        w = targets[i].weight
        current[i] += w
        total += w
        if current[i] > current[best]:
            best = i
    current[best] -= total
    return best


def _price(target: Target, price_of: PriceLookup | None) -> float:
    price = target.price
    if price is None and price_of is not None:
        price = price_of(target)
    if price is None:
        return math.inf
    return price.input_per_mtok + price.output_per_mtok


def _first_then(first: int | None, ranked: list[int]) -> list[int]:
    if first is None or (ranked and ranked[0] == first):
        return ranked
    ranked.remove(first)
    ranked.insert(0, first)
    return ranked


def _order(
    route: RouteLike,
    usable: list[int],
    views: list[TargetHealth],
    state: PlannerState,
    now: float,
    price_of: PriceLookup | None,
) -> list[int]:
    targets = route.targets
    strategy = route.strategy
    if not usable or strategy == "fallback":
        return usable
    if strategy == "weighted":
        first = _swrr_pick(state, route, usable)
        return _first_then(first, sorted(usable, key=lambda i: (-targets[i].weight, i)))
    if strategy == "latency":

        def ttfb(i: int) -> float:
            v = views[i].ewma_ttfb_s
            return math.inf if v is None else v

        first = None
        if state.explore > 0 and state.rng.random() < state.explore:
            fresh = [
                i
                for i in usable
                if views[i].ewma_ttfb_s is None
                or views[i].last_latency_at is None
                or now - (views[i].last_latency_at or 0.0) >= state.stale_after_s
            ]
            if fresh:
                first = state.rng.choice(fresh)
        return _first_then(first, sorted(usable, key=lambda i: (ttfb(i), i)))
    if strategy == "least-busy":
        busy = {i: views[i].in_flight for i in usable}
        least = min(busy.values())
        first = _swrr_pick(state, route, [i for i in usable if busy[i] == least])
        return _first_then(first, sorted(usable, key=lambda i: (busy[i], -targets[i].weight, i)))
    if strategy == "cost":
        cost = {i: _price(targets[i], price_of) for i in usable}
        cheapest = min(cost.values())
        first = _swrr_pick(state, route, [i for i in usable if cost[i] == cheapest])
        return _first_then(first, sorted(usable, key=lambda i: (cost[i], -targets[i].weight, i)))
    raise ValueError(f"unknown routing strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


def plan(
    route: RouteLike,
    snapshot: HealthSnapshot,
    state: PlannerState,
    now: float,
    *,
    price_of: PriceLookup | None = None,
    exclude: Collection[str] = (),
) -> list[Target]:
    """The targets to try for ``route``, best first (see the module docstring for the order).

    ``exclude`` holds target keys not to plan (already tried, say). The list may be empty when every
    target is excluded.
    """
    targets = route.targets
    views = [snapshot.target(t.key) for t in targets]
    usable: list[int] = []
    cooling: list[int] = []
    blocked: list[int] = []
    for i, t in enumerate(targets):
        if exclude and t.key in exclude:
            continue
        h = views[i]
        if h.usable(now):
            usable.append(i)
        elif h.breaker_allows(now):
            cooling.append(i)
        else:
            blocked.append(i)
    order = _order(route, usable, views, state, now, price_of)
    if cooling:
        order = [*order, *sorted(cooling, key=lambda i: (views[i].recovers_at(now), i))]
    if not order and blocked:
        order = [min(blocked, key=lambda i: (views[i].recovers_at(now), i))]
    return [targets[i] for i in order]


def plan_fallback_chain(
    model_name: str,
    models_by_name: Mapping[str, HasFallbacks],
    allows: Callable[[str], bool] | None = None,
) -> list[str]:
    """``model_name`` then its ``fallbacks``, expanded transitively breadth-first, each model once:
    the one fallback chain (routing, worst-case pricing and the planner all use it).

    A model's own fallbacks come before its fallbacks' fallbacks; cycles and unknown names are
    skipped. With ``allows``, a fallback it refuses is neither in the chain nor followed (a key
    allowed only ``cheap`` is never served by a fallback it may not call). An unknown
    ``model_name`` gives an empty chain.
    """
    if model_name not in models_by_name:
        return []
    chain = [model_name]
    seen = {model_name}
    i = 0
    while i < len(chain):
        for fb in models_by_name[chain[i]].fallbacks:
            if fb not in seen and fb in models_by_name:
                seen.add(fb)
                if allows is None or allows(fb):
                    chain.append(fb)
        i += 1
    return chain


def context_fallback_chain(model_name: str, models_by_name: Mapping[str, HasContextFallback]) -> list[str]:
    """The models to try, in order, when ``model_name`` reports CONTEXT_LENGTH: its ``context_fallback``,
    that model's ``context_fallback``, and so on (without cycles; ``model_name`` itself excluded)."""
    chain: list[str] = []
    seen = {model_name}
    current = models_by_name.get(model_name)
    while current is not None:
        nxt = current.context_fallback
        if nxt is None or nxt in seen or nxt not in models_by_name:
            break
        seen.add(nxt)
        chain.append(nxt)
        current = models_by_name[nxt]
    return chain


def hedge_delay_s(after_ms: float | None, first: TargetHealth) -> float | None:
    """How long to wait for the first target's first byte before hedging on the next target.

    A set ``after_ms`` wins; otherwise the target's observed p95 time to first byte, and no hedge
    (None) while too few samples exist to know it.
    """
    if after_ms is not None:
        return max(0.0, after_ms / 1000.0)
    return first.p95_ttfb_s


def backoff_s(retry: int, base_ms: float, max_ms: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Delay before retry number ``retry`` (1 = the first retry): exponential, capped at ``max_ms``,
    with "equal jitter" (uniform in [cap/2, cap]); a larger ``retry_after`` (seconds) wins."""
    cap = min(max_ms, base_ms * 2.0 ** min(max(retry - 1, 0), 62)) / 1000.0
    delay = cap / 2.0 + rng.uniform(0.0, cap / 2.0)
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay
