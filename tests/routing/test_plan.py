from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxway.canonical import ErrorKind, Price, Target
from fluxway.config import ConfigError, HedgeConfig, parse
from fluxway.routing.breaker import BreakerState
from fluxway.routing.clock import ManualClock
from fluxway.routing.health import HealthBoard
from fluxway.routing.health_views import HealthSnapshot, TargetHealth
from fluxway.routing.plan import (
    PlannerState,
    backoff_s,
    context_fallback_chain,
    hedge_delay_s,
    plan,
    plan_fallback_chain,
)

NOW = 1000.0


@dataclass(frozen=True)
class Route:
    name: str
    strategy: str
    targets: tuple[Target, ...]
    fallbacks: tuple[str, ...] = ()  # extra fields are fine: the planner reads only what it needs


def route(strategy: str, *weights: float, name: str = "m") -> Route:
    return Route(name, strategy, tuple(Target(f"p{i}", f"model{i}", w) for i, w in enumerate(weights)))


def snap(*views: TargetHealth) -> HealthSnapshot:
    return HealthSnapshot(NOW, {v.key: v for v in views})


def keys(targets: list[Target]) -> list[str]:
    return [t.key for t in targets]


def state(seed: int = 1, **kw: float) -> PlannerState:
    return PlannerState(random.Random(seed), **kw)


def firsts(r: Route, s: HealthSnapshot, ps: PlannerState, n: int) -> Counter[str]:
    return Counter(plan(r, s, ps, NOW)[0].key for _ in range(n))


def opened(key: str) -> TargetHealth:
    return TargetHealth(key, state=BreakerState.OPEN, open_until=NOW + 5)


# -- weighted ---------------------------------------------------------------------------------------------


def test_weighted_split_over_1000_picks_is_within_2_percent() -> None:
    r = route("weighted", 3, 1)
    c = firsts(r, snap(), state(), 1000)
    assert abs(c["p0/model0"] / 1000 - 0.75) <= 0.02
    assert abs(c["p1/model1"] / 1000 - 0.25) <= 0.02


def test_weighted_split_with_fractional_weights() -> None:
    r = route("weighted", 0.7, 0.2, 0.1)
    c = firsts(r, snap(), state(), 1000)
    for i, share in enumerate([0.7, 0.2, 0.1]):
        assert abs(c[f"p{i}/model{i}"] / 1000 - share) <= 0.02


def test_weighted_is_smooth_like_nginx() -> None:
    r = Route("m", "weighted", (Target("a", "x", 5), Target("b", "x", 1), Target("c", "x", 1)))
    ps = state()
    seq = [plan(r, snap(), ps, NOW)[0].provider for _ in range(14)]
    assert seq == list("aabacaa") * 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=7), st.integers(1, 3))
def test_weighted_counts_are_exact_over_full_cycles(weights: list[int], cycles: int) -> None:
    r = route("weighted", *weights)
    c = firsts(r, snap(), state(), sum(weights) * cycles)
    assert [c[f"p{i}/model{i}"] for i in range(len(weights))] == [w * cycles for w in weights]


def test_weighted_rest_is_by_descending_weight_then_config_order() -> None:
    r = route("weighted", 1, 5, 2, 2)
    out = keys(plan(r, snap(), state(), NOW))
    assert out[0] == "p1/model1"
    assert out == ["p1/model1", "p2/model2", "p3/model3", "p0/model0"]
    assert sorted(out) == sorted(t.key for t in r.targets)


def test_weighted_skips_open_breakers_and_splits_among_the_rest() -> None:
    r = route("weighted", 1, 1, 2)
    s = snap(opened("p2/model2"))
    ps = state()
    outs = [plan(r, s, ps, NOW) for _ in range(1000)]
    assert all("p2/model2" not in keys(o) for o in outs)
    c = Counter(o[0].key for o in outs)
    assert c == {"p0/model0": 500, "p1/model1": 500}


def test_weight_zero_is_a_standby() -> None:
    r = route("weighted", 0, 1)
    ps = state()
    for _ in range(10):
        assert keys(plan(r, snap(), ps, NOW)) == ["p1/model1", "p0/model0"]
    s = snap(opened("p1/model1"))
    assert keys(plan(r, s, ps, NOW)) == ["p0/model0"]
    assert keys(plan(route("weighted", 0, 0), snap(), ps, NOW)) == ["p0/model0", "p1/model1"]


def test_swrr_state_is_per_route_and_reset_when_targets_change() -> None:
    ps = state()
    a, b = route("weighted", 1, 1, name="a"), route("weighted", 1, 1, name="b")
    assert plan(a, snap(), ps, NOW)[0].key == "p0/model0"
    assert plan(b, snap(), ps, NOW)[0].key == "p0/model0"  # b has its own counters
    assert plan(a, snap(), ps, NOW)[0].key == "p1/model1"
    changed = route("weighted", 1, 1, 1, name="a")  # a config reload
    assert keys(plan(changed, snap(), ps, NOW))[0] == "p0/model0"


# -- fallback ----------------------------------------------------------------------------------------------


def test_fallback_is_config_order() -> None:
    r = route("fallback", 1, 9, 5)
    assert keys(plan(r, snap(), state(), NOW)) == ["p0/model0", "p1/model1", "p2/model2"]


def test_fallback_skips_open_and_defers_cooling() -> None:
    r = route("fallback", 1, 1, 1, 1)
    s = snap(
        TargetHealth("p0/model0", cooldown_until=NOW + 30),
        opened("p1/model1"),
        TargetHealth("p2/model2", cooldown_until=NOW + 3),
    )
    assert keys(plan(r, s, state(), NOW)) == ["p3/model3", "p2/model2", "p0/model0"]


def test_a_half_open_primary_gets_its_probe_first() -> None:
    r = route("fallback", 1, 1)
    s = snap(TargetHealth("p0/model0", state=BreakerState.HALF_OPEN, probe_available=True))
    assert keys(plan(r, s, state(), NOW)) == ["p0/model0", "p1/model1"]
    s = snap(TargetHealth("p0/model0", state=BreakerState.HALF_OPEN, probe_available=False, probes_in_flight=1))
    assert keys(plan(r, s, state(), NOW)) == ["p1/model1"]


def test_an_open_breaker_whose_cooldown_passed_is_planned_again() -> None:
    r = route("fallback", 1, 1)
    s = snap(opened("p0/model0"))
    assert keys(plan(r, s, state(), NOW)) == ["p1/model1"]
    assert keys(plan(r, s, state(), NOW + 5)) == ["p0/model0", "p1/model1"]


# -- last resort ----------------------------------------------------------------------------------------


def test_every_target_open_gives_the_one_that_recovers_soonest() -> None:
    r = route("weighted", 1, 1, 1)
    s = snap(
        TargetHealth("p0/model0", state=BreakerState.OPEN, open_until=NOW + 40),
        TargetHealth("p1/model1", state=BreakerState.OPEN, open_until=NOW + 8),
        TargetHealth("p2/model2", state=BreakerState.OPEN, open_until=NOW + 8),
    )
    assert keys(plan(r, s, state(), NOW)) == ["p1/model1"]


def test_open_and_cooling_counts_as_blocked_and_recovers_at_the_later_time() -> None:
    r = route("fallback", 1, 1)
    s = snap(
        TargetHealth("p0/model0", state=BreakerState.OPEN, open_until=NOW + 2, cooldown_until=NOW + 50),
        TargetHealth("p1/model1", state=BreakerState.OPEN, open_until=NOW + 10),
    )
    assert keys(plan(r, s, state(), NOW)) == ["p1/model1"]


def test_a_probing_target_is_the_soonest_when_all_are_blocked() -> None:
    r = route("fallback", 1, 1)
    s = snap(
        TargetHealth("p0/model0", state=BreakerState.OPEN, open_until=NOW + 1),
        TargetHealth("p1/model1", state=BreakerState.HALF_OPEN, probe_available=False),
    )
    assert keys(plan(r, s, state(), NOW)) == ["p1/model1"]


def test_cooling_targets_win_over_open_ones() -> None:
    r = route("fallback", 1, 1)
    s = snap(
        opened("p0/model0"),
        TargetHealth("p1/model1", cooldown_until=NOW + 60),
    )
    assert keys(plan(r, s, state(), NOW)) == ["p1/model1"]


def test_exclude_and_empty_plans() -> None:
    r = route("weighted", 1, 1)
    assert keys(plan(r, snap(), state(), NOW, exclude={"p0/model0"})) == ["p1/model1"]
    assert plan(r, snap(), state(), NOW, exclude={"p0/model0", "p1/model1"}) == []


def test_unknown_strategy_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown routing strategy"):
        plan(route("random", 1, 1), snap(), state(), NOW)


# -- latency ------------------------------------------------------------------------------------------------


def measured(key: str, ttfb: float, at: float = NOW - 1, **kw: object) -> TargetHealth:
    return TargetHealth(key, ewma_ttfb_s=ttfb, latency_samples=10, last_latency_at=at, **kw)  # type: ignore[arg-type]


def test_latency_orders_by_ewma_ttfb_untried_last() -> None:
    r = route("latency", 1, 1, 1, 1)
    s = snap(measured("p0/model0", 0.9), measured("p1/model1", 0.2), measured("p3/model3", 0.5))
    assert keys(plan(r, s, state(explore=0), NOW)) == ["p1/model1", "p3/model3", "p0/model0", "p2/model2"]


def test_latency_ties_and_cold_start_use_config_order() -> None:
    r = route("latency", 1, 1, 1)
    assert keys(plan(r, snap(), state(explore=0), NOW)) == ["p0/model0", "p1/model1", "p2/model2"]
    s = snap(measured("p0/model0", 0.3), measured("p1/model1", 0.3), measured("p2/model2", 0.3))
    assert keys(plan(r, s, state(explore=0), NOW))[0] == "p0/model0"


def test_latency_explores_untried_targets_at_the_set_rate() -> None:
    r = route("latency", 1, 1, 1)
    s = snap(measured("p0/model0", 0.1), measured("p1/model1", 0.2))
    c = firsts(r, s, state(seed=7, explore=0.1), 2000)
    assert set(c) == {"p0/model0", "p2/model2"}
    assert 150 <= c["p2/model2"] <= 250  # 10% of 2000, give or take
    c = firsts(r, s, state(seed=7, explore=1.0), 50)
    assert c == {"p2/model2": 50}


def test_latency_explores_stale_targets_not_fresh_ones() -> None:
    r = route("latency", 1, 1, 1)
    s = snap(
        measured("p0/model0", 0.1),
        measured("p1/model1", 0.5, at=NOW - 61),  # stale
        measured("p2/model2", 0.9, at=NOW - 10),
    )
    c = firsts(r, s, state(explore=1.0, stale_after_s=60), 20)
    assert c == {"p1/model1": 20}
    s = snap(measured("p0/model0", 0.1), measured("p1/model1", 0.5))
    assert firsts(route("latency", 1, 1), s, state(explore=1.0), 20) == {"p0/model0": 20}


def test_latency_exploration_is_random_among_candidates_and_replayable() -> None:
    r = route("latency", 1, 1, 1, 1)
    s = snap(measured("p0/model0", 0.1))
    always = state(seed=3, explore=1.0)
    assert {plan(r, s, always, NOW)[0].key for _ in range(60)} == {"p1/model1", "p2/model2", "p3/model3"}
    ps1, ps2 = state(seed=3, explore=0.5), state(seed=3, explore=0.5)
    seq1 = [plan(r, s, ps1, NOW)[0].key for _ in range(200)]
    seq2 = [plan(r, s, ps2, NOW)[0].key for _ in range(200)]
    assert seq1 == seq2
    assert set(seq1) == {"p0/model0", "p1/model1", "p2/model2", "p3/model3"}


def test_latency_skips_unusable_targets() -> None:
    r = route("latency", 1, 1)
    s = snap(measured("p0/model0", 0.1, state=BreakerState.OPEN, open_until=NOW + 5), measured("p1/model1", 0.9))
    assert keys(plan(r, s, state(explore=0), NOW)) == ["p1/model1"]


# -- least busy ---------------------------------------------------------------------------------------------


def test_least_busy_picks_fewest_in_flight() -> None:
    r = route("least-busy", 1, 1, 1)
    s = snap(
        TargetHealth("p0/model0", in_flight=4),
        TargetHealth("p1/model1", in_flight=1),
        TargetHealth("p2/model2", in_flight=2),
    )
    assert keys(plan(r, s, state(), NOW)) == ["p1/model1", "p2/model2", "p0/model0"]


def test_least_busy_ties_are_shared_by_weight() -> None:
    r = route("least-busy", 3, 1, 5)
    s = snap(TargetHealth("p2/model2", in_flight=1))
    c = firsts(r, s, state(), 400)
    assert c == {"p0/model0": 300, "p1/model1": 100}
    out = keys(plan(r, s, state(), NOW))
    assert out[1:] in (["p1/model1", "p2/model2"], ["p0/model0", "p2/model2"])


def test_least_busy_rest_breaks_ties_by_weight() -> None:
    r = route("least-busy", 1, 2, 3)
    s = snap(TargetHealth("p0/model0", in_flight=0), *(TargetHealth(f"p{i}/model{i}", in_flight=2) for i in (1, 2)))
    assert keys(plan(r, s, state(), NOW)) == ["p0/model0", "p2/model2", "p1/model1"]


# -- cost ----------------------------------------------------------------------------------------------------


def priced(price: Price | None, weight: float = 1.0, provider: str = "p", model: str = "x") -> Target:
    return Target(provider, model, weight, price)


def test_cost_picks_the_cheapest_and_orders_the_rest_by_price() -> None:
    r = Route(
        "m",
        "cost",
        (
            priced(Price(3, 15), provider="a"),
            priced(Price(0.15, 0.6), provider="b"),
            priced(None, provider="c"),
            priced(Price(1, 1), provider="d"),
        ),
    )
    assert keys(plan(r, snap(), state(), NOW)) == ["b/x", "d/x", "a/x", "c/x"]


def test_cost_uses_the_price_lookup_for_targets_without_a_price() -> None:
    r = Route("m", "cost", (priced(Price(1, 1), provider="a"), priced(None, provider="b"), priced(None, provider="c")))
    table = {"b/x": Price(0.1, 0.2)}

    def lookup(t: Target) -> Price | None:
        return table.get(t.key)

    assert keys(plan(r, snap(), state(), NOW, price_of=lookup)) == ["b/x", "a/x", "c/x"]


def test_cost_ties_are_shared_by_weight_and_skip_unhealthy() -> None:
    r = Route(
        "m",
        "cost",
        (priced(Price(1, 1), 1, "a"), priced(Price(1, 1), 1, "b"), priced(Price(0.1, 0.1), 1, "c")),
    )
    s = snap(opened("c/x"))
    assert firsts(r, s, state(), 100) == {"a/x": 50, "b/x": 50}
    unknown = Route("m", "cost", (priced(None, 1, "a"), priced(None, 3, "b")))
    assert firsts(unknown, snap(), state(), 400) == {"a/x": 100, "b/x": 300}


# -- with a real health board ----------------------------------------------------------------------------------


def test_plan_follows_the_board_through_a_breaker_cycle() -> None:
    clock = ManualClock(NOW)
    board = HealthBoard(clock)
    r = route("weighted", 1, 1)
    ps = state()
    for _ in range(5):
        p = board.acquire("p0/model0")
        assert p is not None
        board.record_failure(p, ErrorKind.CONNECT)
    for _ in range(4):
        assert keys(plan(r, board.snapshot(t.key for t in r.targets), ps, clock())) == ["p1/model1"]
    clock.advance(10)
    seen = Counter(plan(r, board.snapshot(), ps, clock())[0].key for _ in range(4))
    assert seen["p0/model0"] >= 1  # half-open: back in the rotation for its probe
    probe = board.acquire("p0/model0")
    assert probe is not None and probe.probe
    assert keys(plan(r, board.snapshot(), ps, clock())) == ["p1/model1"]  # probe slot taken
    board.record_success(probe)
    assert set(keys(plan(r, board.snapshot(), ps, clock()))) == {"p0/model0", "p1/model1"}


def test_all_open_then_forced_probe() -> None:
    clock = ManualClock(NOW)
    board = HealthBoard(clock)
    r = route("fallback", 1, 1)
    for key, extra in (("p0/model0", 0.0), ("p1/model1", 3.0)):
        clock.advance(extra)
        for _ in range(5):
            p = board.acquire(key)
            assert p is not None
            board.record_failure(p, ErrorKind.UPSTREAM_5XX)
    only = plan(r, board.snapshot(), state(), clock())
    assert keys(only) == ["p0/model0"]  # opened first, recovers first
    assert board.acquire(only[0].key) is None
    forced = board.acquire(only[0].key, force=True)
    assert forced is not None and forced.probe


# -- fallback chains ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class M:
    fallbacks: tuple[str, ...] = ()
    context_fallback: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def test_fallback_chain_is_breadth_first_without_repeats() -> None:
    models = {"a": M(("b", "c")), "b": M(("d",)), "c": M(("d", "a")), "d": M(())}
    assert plan_fallback_chain("a", models) == ["a", "b", "c", "d"]
    assert plan_fallback_chain("b", models) == ["b", "d"]
    assert plan_fallback_chain("d", models) == ["d"]


def test_fallback_chain_survives_cycles_self_references_and_unknown_names() -> None:
    models = {"a": M(("a", "b", "ghost")), "b": M(("a", "b"))}
    assert plan_fallback_chain("a", models) == ["a", "b"]
    assert plan_fallback_chain("b", models) == ["b", "a"]
    assert plan_fallback_chain("ghost", models) == []


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), st.lists(st.sampled_from("abcdefg"), max_size=4), min_size=1))
def test_fallback_chain_properties(graph: dict[str, list[str]]) -> None:
    models = {k: M(tuple(v)) for k, v in graph.items()}
    start = sorted(models)[0]
    chain = plan_fallback_chain(start, models)
    assert chain[0] == start
    assert len(chain) == len(set(chain))
    assert set(chain) <= set(models)
    # closed under "falls back to": every known fallback of a chained model is in the chain
    for name in chain:
        assert {fb for fb in models[name].fallbacks if fb in models} <= set(chain)


def test_context_fallback_chain() -> None:
    models = {"small": M(context_fallback="big"), "big": M(context_fallback="huge"), "huge": M()}
    assert context_fallback_chain("small", models) == ["big", "huge"]
    assert context_fallback_chain("huge", models) == []
    assert context_fallback_chain("nope", models) == []
    looped = {"a": M(context_fallback="b"), "b": M(context_fallback="a")}
    assert context_fallback_chain("a", looped) == ["b"]
    dangling = {"a": M(context_fallback="ghost")}
    assert context_fallback_chain("a", dangling) == []


# -- hedge and backoff -----------------------------------------------------------------------------------------------


def test_hedge_delay() -> None:
    h = TargetHealth("p/x", p95_ttfb_s=0.8)
    assert hedge_delay_s(250, h) == 0.25
    assert hedge_delay_s(None, h) == 0.8
    assert hedge_delay_s(None, TargetHealth("p/x")) is None  # too few samples: no hedge


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(5)
    for retry, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (40, 1.0), (10_000, 1.0)]:
        d = backoff_s(retry, 100, 1000, rng)
        assert cap / 2 <= d <= cap
    assert backoff_s(1, 100, 1000, rng, retry_after=3.0) == 3.0
    assert backoff_s(3, 100, 1000, rng, retry_after=0.01) >= 0.2


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.floats(0, 5000), st.floats(0, 60000), st.integers(0, 2**32))
def test_backoff_stays_within_bounds(retry: int, base: float, cap: float, seed: int) -> None:
    d = backoff_s(retry, base, cap, random.Random(seed))
    limit = min(cap, base * 2 ** (retry - 1)) / 1000
    assert limit / 2 - 1e-12 <= d <= limit + 1e-12


# -- config fields for routing ----------------------------------------------------------------------------------------


def config(**model: object) -> dict[str, object]:
    return {
        "providers": [{"name": "o", "type": "openai", "api_keys": ["k"]}],
        "models": [
            {"name": "a", "targets": [{"provider": "o", "model": "m"}], **model},
            {"name": "big", "targets": [{"provider": "o", "model": "m-128k"}]},
        ],
    }


def test_config_routing_fields() -> None:
    m = parse(config(context_fallback="big", hedge={"after_ms": 300}, stream_failover=True)).models[0]
    assert (m.context_fallback, m.hedge, m.stream_failover) == ("big", HedgeConfig(after_ms=300, max_extra=1), True)
    plain = parse(config()).models[0]
    assert (plain.context_fallback, plain.hedge, plain.stream_failover) == (None, None, False)
    assert parse(config(hedge=True)).models[0].hedge == HedgeConfig()
    assert parse(config(hedge=False)).models[0].hedge is None


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ({"context_fallback": "ghost"}, "models[0].context_fallback: unknown model 'ghost'"),
        ({"context_fallback": "a"}, "models[0].context_fallback: a model cannot fall back to itself"),
        ({"hedge": {"after_ms": 0}}, "models[0].hedge.after_ms"),
        ({"hedge": {"max_extra": 0}}, "models[0].hedge.max_extra"),
        ({"hedge": {"delay": 5}}, "models[0].hedge.delay: unknown key"),
    ],
)
def test_config_routing_problems(model: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(config(**model))
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems
