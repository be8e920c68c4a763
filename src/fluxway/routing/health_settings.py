"""The tunables of the health board: breaker thresholds, cool-downs, latency statistics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HealthSettings:
    failure_threshold: int = 5  # consecutive failures that open a breaker
    window_s: float = 30.0  # sliding window of the failure-rate rule
    window_buckets: int = 10  # the window's resolution (window_s / window_buckets seconds)
    failure_rate: float = 0.5  # failure share in the window that opens a breaker ...
    min_volume: int = 10  # ... once the window holds at least this many outcomes
    open_cooldown_s: float = 10.0  # first open period
    cooldown_growth: float = 2.0  # each trip after a failed probe multiplies it
    max_open_cooldown_s: float = 300.0
    half_open_probes: int = 1  # requests let through at once while half-open
    rate_limit_cooldown_s: float = 5.0  # after a 429 without retry-after
    max_rate_limit_cooldown_s: float = 300.0  # a retry-after longer than this is clipped
    auth_trips_key: bool = True  # one auth failure opens that key's breaker
    ewma_alpha: float = 0.3  # weight of the newest latency sample
    latency_samples: int = 128  # ring buffer for the TTFB p95
    p95_min_samples: int = 10  # no p95 is reported before this many samples
    p95_refresh: int = 8  # the p95 is re-sorted after this many new samples (1: always exact)

    def __post_init__(self) -> None:
        problems = []
        if self.failure_threshold < 1:
            problems.append("failure_threshold must be >= 1")
        if self.window_s <= 0 or self.window_buckets < 1:
            problems.append("window_s must be > 0 and window_buckets >= 1")
        if not 0 < self.failure_rate <= 1:
            problems.append("failure_rate must be in (0, 1]")
        if self.min_volume < 1:
            problems.append("min_volume must be >= 1")
        if self.open_cooldown_s < 0 or self.max_open_cooldown_s < self.open_cooldown_s:
            problems.append("open_cooldown_s must be >= 0 and <= max_open_cooldown_s")
        if self.cooldown_growth < 1:
            problems.append("cooldown_growth must be >= 1")
        if self.half_open_probes < 1:
            problems.append("half_open_probes must be >= 1")
        if self.rate_limit_cooldown_s < 0 or self.max_rate_limit_cooldown_s < 0:
            problems.append("rate-limit cool-downs must be >= 0")
        if not 0 < self.ewma_alpha <= 1:
            problems.append("ewma_alpha must be in (0, 1]")
        if self.latency_samples < 1 or self.p95_min_samples < 1 or self.p95_refresh < 1:
            problems.append("latency_samples, p95_min_samples and p95_refresh must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    def open_cooldown(self, trips: int) -> float:
        """How long the ``trips``-th consecutive trip keeps a breaker open."""
        if trips <= 1:
            return self.open_cooldown_s
        # Cap the exponent: growth ** huge would overflow long after the cap is reached anyway.
        return min(self.max_open_cooldown_s, self.open_cooldown_s * self.cooldown_growth ** min(trips - 1, 64))


# ---------------------------------------------------------------------------------------------
# Immutable views
