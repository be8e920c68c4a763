"""The ``alerts`` config section: one rule per entry, validated strictly (docs/alerts.md).

A rule watches one metric of the calls it matches (``model``, ``provider``, ``key``, ``team``
filters), over a sliding ``window``, either per value of ``per`` or over all of them at once, and
fires when the value is ``above`` / ``below`` its threshold, or, with ``baseline``, when it spikes
past what the rule has learned is normal for that subject.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fluxway.config_base import Strict

Metric = Literal["error_rate", "latency_p95_ms", "spend_usd", "budget_used", "breaker_open"]
Per = Literal["model", "provider", "key", "team"]
# Metrics computed from the calls of a sliding window (the others read current state).
WINDOWED: frozenset[str] = frozenset({"error_rate", "latency_p95_ms", "spend_usd"})

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``30s``, ``5m``, ``1h``, ``1d``, ``250ms`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT_S[m.group(2)]
    raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}")


class BaselineConfig(Strict):
    # A value this many spreads (EWMA standard deviations) above the learned mean is a spike.
    sigmas: float = Field(3.0, gt=0, le=100)
    # Samples (one per evaluation with enough calls) learned before spikes are flagged.
    min_samples: int = Field(20, ge=2, le=100000)
    # How fast the baseline forgets: a sample's weight halves after this long (`30m`, `1h`).
    half_life: float = Field(1800.0, gt=0)
    # And a spike must exceed the mean by at least this share of it (0.2: 20 % more), so a
    # near-constant baseline does not flag noise.
    min_change: float = Field(0.2, ge=0)

    @field_validator("half_life", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class AlertRule(Strict):
    # The rule's name: in events, /admin/alerts and the `rule` label of the alert metrics.
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # error_rate (share of calls answered 5xx), latency_p95_ms (whole-call latency), spend_usd
    # (cost in the window), budget_used (share of a key's or team's budget spent), breaker_open
    # (1 while a target's circuit breaker is open).
    metric: Metric
    # The sliding window of the call metrics: `30s`, `5m`, `1h` or seconds, from 1s to 1d (default
    # 5m; budget_used and breaker_open take none).
    window: float | None = None
    # Fires when the value is above this ...
    above: float | None = None
    # ... or below this (give one; breaker_open defaults to `above: 0`, a baseline rule takes none).
    below: float | None = None
    # Only calls to this public model (breaker_open: this model's targets).
    model: str | None = Field(None, min_length=1, max_length=256)
    # Only calls served by this provider (breaker_open: its targets).
    provider: str | None = Field(None, min_length=1, max_length=128)
    # Only calls made with this key id (budget_used: only this key's budget).
    key: str | None = Field(None, min_length=1, max_length=64)
    # Only calls of this team's keys (budget_used: only this team's budget).
    team: str | None = Field(None, min_length=1, max_length=128)
    # One alert per model, provider, key or team seen (else one for all the matching calls).
    per: Per | None = None
    # No verdict on error_rate / latency_p95_ms until the window holds this many calls.
    min_requests: int = Field(10, ge=1)
    # After an alert resolves, the same rule and subject fire again only after this long (`10m`, seconds).
    cooldown: float = Field(300.0, ge=0)
    # The event sinks (`events[].name`) alert.fired / alert.resolved go to; omitted: every sink.
    notify: tuple[str, ...] | None = Field(None, min_length=1)
    # A learned baseline per subject instead of a fixed threshold (flags spikes; docs/alerts.md).
    baseline: BaselineConfig | None = None

    @field_validator("window", "cooldown", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @field_validator("window")
    @classmethod
    def _window_bounds(cls, v: float | None) -> float | None:
        if v is not None and not 1.0 <= v <= 86400.0:
            raise ValueError("expected a window from 1s to 1d")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        windowed = self.metric in WINDOWED
        if windowed and self.window is None:
            object.__setattr__(self, "window", 300.0)
        if not windowed and self.window is not None:
            raise ValueError(f"window: not used by metric {self.metric} (it reads the current state)")
        if self.above is not None and self.below is not None:
            raise ValueError("give above or below, not both")
        if self.baseline is not None:
            if not windowed:
                raise ValueError(f"baseline: metric {self.metric} has no window to learn from")
            if self.above is not None or self.below is not None:
                raise ValueError("baseline: a baseline rule learns its threshold (no above / below)")
            if self.per is None:
                object.__setattr__(self, "per", "model")
        elif self.above is None and self.below is None:
            if self.metric != "breaker_open":
                raise ValueError("give a threshold: above or below (or a baseline)")
            object.__setattr__(self, "above", 0.0)
        if self.metric == "breaker_open" and (self.key is not None or self.team is not None or self.per):
            raise ValueError("breaker_open: watches targets (filter by model or provider only)")
        if self.metric == "budget_used" and (self.model is not None or self.provider is not None or self.per):
            raise ValueError("budget_used: watches key and team budgets (filter by key or team only)")
        return self


class AlertingConfig(Strict):
    # Seconds between two evaluations of the alert rules.
    interval_s: float = Field(5.0, gt=0, le=3600)
    # Subjects (models, providers, keys, teams) one rule keeps windows for at most; the longest
    # idle is dropped past it.
    max_subjects: int = Field(1000, ge=1, le=100000)


def alert_problems(rules: tuple[AlertRule, ...], cfg: Any) -> list[str]:
    """Cross-checks of the ``alerts`` list: unique names, known models and providers, and notify
    names that are sinks of the ``events`` section (checked once a config has that section)."""
    problems: list[str] = []
    seen: set[str] = set()
    models = {m.name for m in cfg.models}
    providers = {p.name for p in cfg.providers}
    sinks_cfg = getattr(cfg, "events", None)
    sinks = None if sinks_cfg is None else {str(getattr(s, "name", "")) for s in sinks_cfg}
    for i, r in enumerate(rules):
        if r.name in seen:
            problems.append(f"alerts[{i}].name: duplicate alert name '{r.name}'")
        seen.add(r.name)
        if r.model is not None and r.model not in models:
            problems.append(f"alerts[{i}].model: unknown model '{r.model}'")
        if r.provider is not None and r.provider not in providers:
            problems.append(f"alerts[{i}].provider: unknown provider '{r.provider}'")
        if sinks is not None:
            for j, name in enumerate(r.notify or ()):
                if name not in sinks:
                    problems.append(f"alerts[{i}].notify[{j}]: unknown event sink '{name}'")
    return problems
