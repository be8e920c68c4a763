"""A learned baseline: an exponentially weighted moving mean and variance of one subject's values.

``check(value)`` says whether a value is a spike (beyond ``sigmas`` spreads above the mean, and at
least ``min_change`` of the mean above it, once ``min_samples`` were learned) and then learns it.
The weight of a sample halves every ``half_life`` seconds of the clock that stamps the samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Verdict:
    spike: bool
    threshold: float | None  # mean + sigmas * spread (None while still learning)
    mean: float | None
    spread: float | None


class Baseline:
    __slots__ = ("_last", "half_life", "mean", "min_change", "min_samples", "samples", "sigmas", "var")

    def __init__(self, *, sigmas: float, min_samples: int, half_life: float, min_change: float) -> None:
        self.sigmas = sigmas
        self.min_samples = min_samples
        self.half_life = half_life
        self.min_change = min_change
        self.mean = 0.0
        self.var = 0.0
        self.samples = 0
        self._last: float | None = None

    @property
    def spread(self) -> float:
        return math.sqrt(self.var)

    def threshold(self) -> float | None:
        if self.samples < self.min_samples:
            return None
        return max(self.mean + self.sigmas * self.spread, self.mean * (1.0 + self.min_change))

    def check(self, value: float, now: float) -> Verdict:
        """Judge ``value`` against what was learned before it, then learn it."""
        threshold = self.threshold()
        verdict = Verdict(
            spike=threshold is not None and value > threshold,
            threshold=threshold,
            mean=self.mean if self.samples else None,
            spread=self.spread if self.samples else None,
        )
        self.learn(value, now)
        return verdict

    def learn(self, value: float, now: float) -> None:
        if self.samples == 0:
            self.mean, self.var = value, 0.0
        else:
            dt = max(now - self._last, 0.0) if self._last is not None else 0.0
            # The new sample's weight: what the past lost over dt (at least a small share each time).
            alpha = max(1.0 - 0.5 ** (dt / self.half_life), 1e-3)
            if self.samples < self.min_samples:  # warm-up: a plain running mean, then the EWMA
                alpha = max(alpha, 1.0 / (self.samples + 1))
            diff = value - self.mean
            incr = alpha * diff
            self.mean += incr
            self.var = (1.0 - alpha) * (self.var + diff * incr)
        self.samples += 1
        self._last = now
