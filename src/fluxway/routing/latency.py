"""Latency statistics of one target: EWMAs of time to first byte and of total time, a TTFB p95."""

from __future__ import annotations

import math


class LatencyStats:
    """EWMAs of TTFB and total time, and a ring of TTFB samples for the p95."""

    __slots__ = ("_p95", "_p95_count", "_pos", "_ring", "count", "ewma_total", "ewma_ttfb", "last_at")

    def __init__(self) -> None:
        self.ewma_ttfb: float | None = None
        self.ewma_total: float | None = None
        self.count = 0  # TTFB samples ever taken
        self.last_at: float | None = None
        self._ring: list[float] = []
        self._pos = 0
        self._p95: float | None = None  # cached ...
        self._p95_count = 0  # ... as of this many samples

    def add_ttfb(self, now: float, seconds: float, alpha: float, size: int) -> None:
        seconds = max(0.0, seconds)
        self.ewma_ttfb = seconds if self.ewma_ttfb is None else self.ewma_ttfb + alpha * (seconds - self.ewma_ttfb)
        if len(self._ring) < size:
            self._ring.append(seconds)
        else:
            self._ring[self._pos] = seconds
            self._pos = (self._pos + 1) % size
        self.count += 1
        self.last_at = now

    def add_total(self, now: float, seconds: float, alpha: float) -> None:
        seconds = max(0.0, seconds)
        self.ewma_total = seconds if self.ewma_total is None else self.ewma_total + alpha * (seconds - self.ewma_total)
        self.last_at = now

    def p95(self, min_samples: int, refresh: int) -> float | None:
        """Nearest-rank 95th percentile of the samples in the ring, re-sorted every ``refresh`` samples."""
        n = len(self._ring)
        if n < min_samples:
            return None
        if self._p95 is None or self.count - self._p95_count >= refresh:
            self._p95 = sorted(self._ring)[math.ceil(0.95 * n) - 1]
            self._p95_count = self.count
        return self._p95
