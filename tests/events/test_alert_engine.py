"""The alert engine on a real store (SQLite and PostgreSQL), a manual clock and a fake event bus."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fluxway.events.alerts.engine import AlertEngine
from fluxway.events.alerts.settings import AlertingConfig, AlertRule
from fluxway.events.alerts.store import AlertStore
from fluxway.policy.keys import BudgetLine
from fluxway.routing.clock import ManualClock
from fluxway.store import Store
from tests.store import dbs

db_url = dbs.db_url


class FakeBus:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], Sequence[str] | None]] = []

    def emit(self, type: str, data: Mapping[str, Any], *, sinks: Sequence[str] | None = None) -> None:
        self.events.append((type, dict(data), sinks))

    def types(self) -> list[str]:
        return [t for t, _, _ in self.events]


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[AlertStore]:
    s = Store.open(db_url)
    await s.upgrade()
    yield AlertStore(s.engine)
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[AlertStore]:
    s = Store.open(f"sqlite:///{tmp_path}/a.db")
    await s.upgrade()
    yield AlertStore(s.engine)
    await s.close()


def rule(**kw: Any) -> AlertRule:
    base: dict[str, Any] = {"name": "errors", "metric": "error_rate", "window": 60, "above": 0.5,
                            "min_requests": 5, "cooldown": 100, "notify": ["ops"]}
    return AlertRule.model_validate({**base, **kw})


def engine(store: AlertStore, clock: ManualClock, rules: list[AlertRule], bus: FakeBus | None = None,
           **kw: Any) -> AlertEngine:
    return AlertEngine(rules, AlertingConfig(interval_s=1.0), store, events=lambda: bus, clock=clock, **kw)


def calls(e: AlertEngine, n: int, status: int, *, model: str = "smart", latency_ms: float = 100.0,
          cost: float = 0.0, key: str | None = "k1", team: str | None = None) -> None:
    for _ in range(n):
        e.observe(model, "up", key, team, status, latency_ms, cost)


async def test_fires_once_resolves_once_and_honours_the_cooldown(store: AlertStore) -> None:
    clock, bus = ManualClock(1000.0), FakeBus()
    e = engine(store, clock, [rule()], bus)
    calls(e, 10, 502)
    fired = await e.evaluate()
    assert [(t.subject, t.to) for t in fired] == [("*", "firing")]
    assert fired[0].value == 1.0
    assert await e.evaluate() == []  # still breaching: no second event
    assert e.firing == {"errors": 1}
    assert bus.types() == ["alert.fired"]
    _, data, sinks = bus.events[0]
    assert sinks == ("ops",)
    assert data["rule"] == "errors" and data["metric"] == "error_rate" and data["value"] == 1.0
    assert data["threshold"] == 0.5 and data["op"] == "above" and data["window_s"] == 60.0

    clock.advance(61.0)  # the failures leave the window; the provider answers again
    calls(e, 10, 200)
    resolved = await e.evaluate()
    assert [t.to for t in resolved] == ["ok"]
    assert await e.evaluate() == []
    assert bus.types() == ["alert.fired", "alert.resolved"]
    assert e.firing == {"errors": 0}

    clock.advance(61.0)
    calls(e, 10, 500)  # failing again within the cool-down (100 s after the resolve): silent
    assert await e.evaluate() == []
    clock.advance(40.0)
    calls(e, 10, 500)
    assert [t.to for t in await e.evaluate()] == ["firing"]
    assert bus.types() == ["alert.fired", "alert.resolved", "alert.fired"]
    assert e.transitions[("errors", "fired")] == 2 and e.transitions[("errors", "resolved")] == 1

    rows, nxt = await store.history(limit=2)
    assert [r["kind"] for r in rows] == ["fired", "resolved"] and nxt is not None
    rest, end = await store.history(limit=2, cursor=nxt)
    assert [r["kind"] for r in rest] == ["fired"] and end is None


async def test_instances_sharing_the_store_fire_and_resolve_once(store: AlertStore) -> None:
    clock = ManualClock(1000.0)
    buses = [FakeBus(), FakeBus()]
    a, b = (engine(store, clock, [rule()], bus) for bus in buses)
    for e in (a, b):
        calls(e, 10, 503)
    made = await a.evaluate() + await b.evaluate()
    assert [t.to for t in made] == ["firing"]
    assert sum(len(x.events) for x in buses) == 1
    assert a.firing == {"errors": 1}
    await a.evaluate()
    assert b.firing == {"errors": 1}
    clock.advance(61.0)
    for e in (a, b):
        calls(e, 10, 200)
    made = await b.evaluate() + await a.evaluate()
    assert [t.to for t in made] == ["ok"]
    assert sorted(t for x in buses for t in x.types()) == ["alert.fired", "alert.resolved"]


async def test_too_few_calls_never_fire(sqlite_store: AlertStore) -> None:
    e = engine(sqlite_store, ManualClock(), [rule(min_requests=5)])
    calls(e, 4, 500)
    assert await e.evaluate() == []
    calls(e, 1, 500)
    assert len(await e.evaluate()) == 1


async def test_per_model_subjects_and_filters(sqlite_store: AlertStore) -> None:
    e = engine(sqlite_store, ManualClock(), [rule(per="model"), rule(name="cheap-only", model="cheap")])
    calls(e, 10, 500, model="smart")
    calls(e, 10, 200, model="cheap")
    made = await e.evaluate()
    assert [(t.rule, t.subject) for t in made] == [("errors", "model=smart")]
    assert e.firing == {"errors": 1, "cheap-only": 0}


async def test_a_client_going_away_is_not_counted(sqlite_store: AlertStore) -> None:
    e = engine(sqlite_store, ManualClock(), [rule()])
    calls(e, 10, 499)
    assert await e.evaluate() == []
    assert e.rules["errors"].windows == {}


async def test_latency_and_spend_rules(sqlite_store: AlertStore) -> None:
    clock = ManualClock()
    e = engine(sqlite_store, clock, [
        rule(name="slow", metric="latency_p95_ms", above=4000, min_requests=3),
        rule(name="spend", metric="spend_usd", window=3600, above=1.0),
    ])
    calls(e, 20, 200, latency_ms=50.0, cost=0.01)
    assert await e.evaluate() == []
    calls(e, 5, 200, latency_ms=6000.0, cost=0.2)
    made = {t.rule: t for t in await e.evaluate()}
    assert set(made) == {"slow", "spend"}
    assert made["slow"].value is not None and made["slow"].value > 4000
    assert made["spend"].value == pytest.approx(1.2)


async def test_budget_use_and_breakers(sqlite_store: AlertStore) -> None:
    used = {"key:k1": 0.5, "team:search": 0.95}
    open_now = {"up/a": False, "up/b": True, "other/c": True}

    async def budget_use(line: BudgetLine, now: float) -> float:
        return used[line.scope]

    e = engine(
        sqlite_store, ManualClock(),
        [rule(name="budget", metric="budget_used", window=None, above=0.9),
         rule(name="broken", metric="breaker_open", window=None, above=None, provider="up")],
        budget_use=budget_use, breakers=lambda: open_now,
    )
    e.observe("smart", "up", "k1", "search", 200, 10.0, 0.1,
              (BudgetLine("key:k1", 10.0, "monthly"), BudgetLine("team:search", 100.0, "monthly")))
    made = sorted((t.rule, t.subject) for t in await e.evaluate())
    assert made == [("broken", "target=up/b"), ("budget", "team:search")]
    open_now["up/b"] = False
    used["team:search"] = 0.2
    assert sorted((t.rule, t.to) for t in await e.evaluate()) == [("broken", "ok"), ("budget", "ok")]


async def test_baseline_flags_a_latency_spike_no_static_rule_names(sqlite_store: AlertStore) -> None:
    clock, bus = ManualClock(), FakeBus()
    spikes = rule(name="spikes", metric="latency_p95_ms", window=10, above=None, min_requests=3,
                  baseline={"sigmas": 3, "min_samples": 10, "half_life": "10m"})
    e = engine(sqlite_store, clock, [spikes], bus)
    for i in range(30):  # a steady 100-130 ms for the model, one evaluation per second
        calls(e, 5, 200, latency_ms=100.0 + (i % 4) * 10.0)
        assert await e.evaluate() == []
        clock.advance(1.0)
    clock.advance(10.0)
    calls(e, 5, 200, latency_ms=2000.0)
    made = await e.evaluate()
    assert [(t.subject, t.to) for t in made] == [("model=smart", "firing")]
    assert made[0].threshold is not None and 100.0 < made[0].threshold < 400.0
    assert bus.events[0][1]["op"] == "baseline"
    clock.advance(11.0)
    calls(e, 5, 200, latency_ms=110.0)
    assert [t.to for t in await e.evaluate()] == ["ok"]


async def test_a_firing_alert_nobody_sees_any_more_resolves_once_stale(sqlite_store: AlertStore) -> None:
    clock = ManualClock(1000.0)
    a = engine(sqlite_store, clock, [rule(per="key")])
    calls(a, 10, 500, key="gone")
    assert len(await a.evaluate()) == 1
    b = engine(sqlite_store, clock, [rule(per="key")])  # another instance (or this one, restarted)
    assert await b.evaluate() == []  # recently seen breaching by a: left alone
    clock.advance(30.0)
    await a.evaluate()  # a still sees it (checked_at refreshed)
    clock.advance(60.0)
    assert await b.evaluate() == []
    clock.advance(10.0)  # a went away: nobody has seen it breaching for window + 3 intervals
    made = await b.evaluate()
    assert [(t.subject, t.to) for t in made] == [("key=gone", "ok")]
