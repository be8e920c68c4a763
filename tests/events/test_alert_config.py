"""The ``alerts`` config section: SPEC §2's examples load; bad rules are errors with their path."""

from __future__ import annotations

from typing import Any

import pytest

from fluxway.config import Config, ConfigError, parse
from fluxway.events.alerts.settings import alert_problems, parse_duration

BASE: dict[str, Any] = {
    "providers": [{"name": "up", "type": "openai", "api_keys": ["k"]}],
    "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
}


# The rules below notify sink "ops": once the config has an `events` section, it must name one.
SINKS: dict[str, Any] = (
    {"events": [{"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s"}]}
    if "events" in Config.model_fields else {}
)


def load(alerts: Any, **extra: Any) -> Config:
    return parse({**BASE, **SINKS, "alerts": alerts, **extra}, {})


def problems(alerts: Any, **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(alerts, **extra)
    return exc.value.problems


def test_spec_examples_load() -> None:
    cfg = load([
        {"name": "errors", "metric": "error_rate", "window": "5m", "above": 0.05, "notify": ["ops"]},
        {"name": "slow", "metric": "latency_p95_ms", "window": "5m", "above": 4000, "model": "smart",
         "notify": ["ops"]},
        {"name": "spend", "metric": "spend_usd", "window": "1h", "above": 50, "notify": ["ops"]},
        {"name": "spikes", "metric": "latency_p95_ms", "window": "1m", "baseline": {"sigmas": 3, "min_samples": 30}},
        {"name": "broken", "metric": "breaker_open", "provider": "up"},
        {"name": "budget", "metric": "budget_used", "above": 0.8, "cooldown": "1h"},
    ])
    errors, slow, spend, spikes, broken, budget = cfg.alerts
    assert errors.window == 300.0 and errors.above == 0.05 and errors.notify == ("ops",)
    assert spend.window == 3600.0
    assert slow.model == "smart"
    assert spikes.per == "model" and spikes.baseline is not None and spikes.baseline.min_samples == 30
    assert broken.above == 0.0 and broken.window is None
    assert budget.cooldown == 3600.0 and budget.window is None
    assert cfg.observability.alerting.interval_s == 5.0


def test_durations() -> None:
    assert parse_duration("30s") == 30.0
    assert parse_duration("5m") == 300.0
    assert parse_duration("1h") == 3600.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration(12) == 12.0
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"name": "a", "metric": "error_rate", "above": 0.1, "colour": "red"}, "alerts[0].colour: unknown key"),
        ({"name": "a", "metric": "errors", "above": 0.1}, "alerts[0].metric: Input should be"),
        ({"name": "a", "metric": "error_rate", "above": 0.1, "window": "5 minutes"},
         "alerts[0].window: expected a duration"),
        ({"name": "a", "metric": "error_rate", "above": 0.1, "window": "2d"}, "alerts[0].window: expected a window"),
        ({"name": "a", "metric": "error_rate"}, "alerts[0]: give a threshold"),
        ({"name": "a", "metric": "error_rate", "above": 1, "below": 0}, "alerts[0]: give above or below"),
        ({"name": "a", "metric": "budget_used", "above": 0.8, "window": "5m"}, "alerts[0]: window: not used"),
        ({"name": "a", "metric": "budget_used", "above": 0.8, "model": "smart"}, "alerts[0]: budget_used:"),
        ({"name": "a", "metric": "breaker_open", "key": "k1"}, "alerts[0]: breaker_open:"),
        ({"name": "a", "metric": "error_rate", "above": 0.1, "min_requests": 0}, "alerts[0].min_requests:"),
        ({"name": "a b", "metric": "error_rate", "above": 0.1}, "alerts[0].name:"),
        ({"name": "a", "metric": "error_rate", "above": 0.1, "notify": []}, "alerts[0].notify:"),
        ({"name": "a", "metric": "error_rate", "above": 0.1, "per": "tag"}, "alerts[0].per:"),
        ({"name": "a", "metric": "error_rate", "baseline": {"sigmas": 3}, "above": 0.2}, "alerts[0]: baseline:"),
        ({"name": "a", "metric": "error_rate", "baseline": {"sigma": 3}}, "alerts[0].baseline.sigma: unknown key"),
        ({"name": "a", "metric": "error_rate", "above": 0.1, "model": "nope"}, "alerts[0].model: unknown model 'nope'"),
        ({"name": "a", "metric": "error_rate", "above": 0.1, "provider": "nope"},
         "alerts[0].provider: unknown provider 'nope'"),
    ],
)
def test_bad_rules_name_their_path(rule: dict[str, Any], expected: str) -> None:
    got = problems([rule])
    assert any(p.startswith(expected) for p in got), got


def test_duplicate_names() -> None:
    rule = {"name": "a", "metric": "error_rate", "above": 0.1}
    assert "alerts[1].name: duplicate alert name 'a'" in problems([rule, rule])


def test_notify_is_checked_against_event_sinks_when_the_config_has_them() -> None:
    cfg = load([{"name": "a", "metric": "error_rate", "above": 0.1, "notify": ["ops"]}])
    rules = (cfg.alerts[0].model_copy(update={"notify": ("ops", "pager")}),)

    class Sink:
        def __init__(self, name: str) -> None:
            self.name = name

    class WithEvents:
        models = cfg.models
        providers = cfg.providers
        events = (Sink("ops"),)

    assert alert_problems(rules, WithEvents()) == ["alerts[0].notify[1]: unknown event sink 'pager'"]
    assert alert_problems(cfg.alerts, WithEvents()) == []


def test_interval_setting() -> None:
    cfg = load([], observability={"alerting": {"interval_s": 0.2}})
    assert cfg.observability.alerting.interval_s == 0.2
    assert problems([], observability={"alerting": {"interval": 1}}) == ["observability.alerting.interval: unknown key"]
