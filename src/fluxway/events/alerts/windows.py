"""Sliding windows of calls: a ring of time slots, each with counts, errors, cost and (when asked)
a latency histogram. Adding a call is a few integer bumps; reading a window merges its slots."""

from __future__ import annotations

import math
from bisect import bisect_left

SLOTS = 30  # slots per window: the window slides in steps of window/SLOTS

# Latency bucket bounds in ms, log-spaced (each 10 % above the last) from 1 ms to about 30 min: a
# p95 read from them is within 10 % of the exact one.
_RATIO = 1.1
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(_RATIO**i for i in range(int(math.log(1.8e6) / math.log(_RATIO)) + 1))


class _Slot:
    __slots__ = ("errors", "latency", "requests", "spend", "start")

    def __init__(self, start: int, latency: bool) -> None:
        self.start = start
        self.requests = 0
        self.errors = 0
        self.spend = 0.0
        self.latency: list[int] | None = [0] * (len(LATENCY_BOUNDS_MS) + 1) if latency else None


class Window:
    """Calls of the last ``seconds`` (to within one slot), for one rule and subject."""

    __slots__ = ("_latency", "_slots", "_width", "last_seen", "seconds")

    def __init__(self, seconds: float, *, latency: bool = False) -> None:
        self.seconds = seconds
        self._width = seconds / SLOTS
        self._latency = latency
        self._slots: list[_Slot | None] = [None] * SLOTS
        self.last_seen = 0.0

    def _slot(self, now: float) -> _Slot:
        n = int(now // self._width)
        i = n % SLOTS
        s = self._slots[i]
        if s is None or s.start != n:
            s = self._slots[i] = _Slot(n, self._latency)
        return s

    def add(self, now: float, *, error: bool, latency_ms: float, cost_usd: float) -> None:
        s = self._slot(now)
        self.last_seen = now
        s.requests += 1
        if error:
            s.errors += 1
        s.spend += cost_usd
        if s.latency is not None:
            s.latency[bisect_left(LATENCY_BOUNDS_MS, latency_ms)] += 1

    def _live(self, now: float) -> list[_Slot]:
        n = int(now // self._width)
        return [s for s in self._slots if s is not None and n - SLOTS < s.start <= n]

    def requests(self, now: float) -> int:
        return sum(s.requests for s in self._live(now))

    def error_rate(self, now: float) -> float | None:
        live = self._live(now)
        total = sum(s.requests for s in live)
        return sum(s.errors for s in live) / total if total else None

    def spend(self, now: float) -> float:
        return sum(s.spend for s in self._live(now))

    def latency_quantile(self, now: float, q: float = 0.95) -> float | None:
        """The ``q`` quantile of the window's latencies, interpolated within its bucket (ms)."""
        counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        for s in self._live(now):
            if s.latency is not None:
                for i, c in enumerate(s.latency):
                    if c:
                        counts[i] += c
        total = sum(counts)
        if not total:
            return None
        rank = q * total
        seen = 0
        for i, c in enumerate(counts):
            if c and seen + c >= rank:
                lo = LATENCY_BOUNDS_MS[i - 1] if i > 0 else 0.0
                hi = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else LATENCY_BOUNDS_MS[-1]
                return lo + (hi - lo) * ((rank - seen) / c)
            seen += c
        return LATENCY_BOUNDS_MS[-1]
