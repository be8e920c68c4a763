"""The pure parts of alerting: sliding windows and the learned (EWMA) baseline, on a manual clock."""

from __future__ import annotations

import random

import pytest

from fluxway.events.alerts.baseline import Baseline
from fluxway.events.alerts.windows import Window
from fluxway.routing.clock import ManualClock


def test_window_counts_errors_and_spend_and_forgets_old_calls() -> None:
    clock = ManualClock(0.0)
    w = Window(60.0)
    for i in range(10):
        w.add(clock(), error=i < 3, latency_ms=100.0, cost_usd=0.5)
    assert w.requests(clock()) == 10
    assert w.error_rate(clock()) == pytest.approx(0.3)
    assert w.spend(clock()) == pytest.approx(5.0)
    clock.advance(30.0)
    w.add(clock(), error=False, latency_ms=100.0, cost_usd=1.0)
    assert w.requests(clock()) == 11
    clock.advance(40.0)  # the first ten are older than the window now; the last one is not
    assert w.requests(clock()) == 1
    assert w.error_rate(clock()) == 0.0
    assert w.spend(clock()) == pytest.approx(1.0)
    clock.advance(61.0)
    assert w.requests(clock()) == 0
    assert w.error_rate(clock()) is None


def test_window_reuses_ring_slots_after_a_full_turn() -> None:
    clock = ManualClock(0.0)
    w = Window(30.0)
    w.add(clock(), error=True, latency_ms=1.0, cost_usd=0.0)
    clock.advance(30.0)  # the same ring slot, one turn later: the old call must not count
    w.add(clock(), error=False, latency_ms=1.0, cost_usd=0.0)
    assert w.requests(clock()) == 1
    assert w.error_rate(clock()) == 0.0


def test_latency_p95_is_close_to_the_exact_one() -> None:
    rng = random.Random(7)
    w = Window(300.0, latency=True)
    values = [rng.lognormvariate(6.0, 0.8) for _ in range(5000)]
    for v in values:
        w.add(10.0, error=False, latency_ms=v, cost_usd=0.0)
    exact = sorted(values)[int(0.95 * len(values))]
    got = w.latency_quantile(10.0, 0.95)
    assert got is not None
    assert got == pytest.approx(exact, rel=0.1)
    assert Window(300.0, latency=True).latency_quantile(0.0) is None


def test_latency_of_a_slow_upstream_reads_slow() -> None:
    w = Window(60.0, latency=True)
    for _ in range(95):
        w.add(1.0, error=False, latency_ms=50.0, cost_usd=0.0)
    for _ in range(5):
        w.add(1.0, error=False, latency_ms=5000.0, cost_usd=0.0)
    p95 = w.latency_quantile(1.0)
    assert p95 is not None and p95 < 60.0
    for _ in range(10):
        w.add(1.0, error=False, latency_ms=5000.0, cost_usd=0.0)
    p95 = w.latency_quantile(1.0)
    assert p95 is not None and 4500.0 < p95 <= 5500.0


def _baseline(**kw: float) -> Baseline:
    args = {"sigmas": 3.0, "min_samples": 10, "half_life": 600.0, "min_change": 0.2, **kw}
    return Baseline(sigmas=args["sigmas"], min_samples=int(args["min_samples"]), half_life=args["half_life"],
                    min_change=args["min_change"])


def test_baseline_learns_then_flags_a_spike_and_not_noise() -> None:
    rng = random.Random(3)
    b = _baseline()
    clock = ManualClock(0.0)
    for _ in range(9):
        v = b.check(100.0 + rng.uniform(-10, 10), clock.advance(5.0))
        assert not v.spike and v.threshold is None  # still learning
    for _ in range(200):
        v = b.check(100.0 + rng.uniform(-10, 10), clock.advance(5.0))
        assert not v.spike
    assert b.mean == pytest.approx(100.0, abs=5.0)
    assert 2.0 < b.spread < 10.0
    spike = b.check(400.0, clock.advance(5.0))
    assert spike.spike
    assert spike.threshold is not None and 110.0 < spike.threshold < 140.0


def test_baseline_min_change_ignores_tiny_moves_of_a_flat_series() -> None:
    b = _baseline(min_samples=5, min_change=0.2)
    for i in range(50):
        b.check(100.0, float(i))
    assert b.spread == pytest.approx(0.0, abs=1e-9)
    assert not b.check(110.0, 51.0).spike  # 10 % over a zero-spread mean: under min_change
    assert b.check(130.0, 52.0).spike


def test_baseline_adapts_to_a_new_level() -> None:
    b = _baseline(half_life=60.0, min_samples=5)
    t = 0.0
    for _ in range(50):
        t += 5.0
        b.check(100.0, t)
    fired = [b.check(300.0, t + 5.0 * (i + 1)).spike for i in range(100)]
    assert fired[0]
    assert not fired[-1]  # after several half-lives 300 is the new normal
