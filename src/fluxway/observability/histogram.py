"""A Prometheus histogram as plain numbers: one list increment and one addition per observation."""

from __future__ import annotations

from bisect import bisect_left

# Seconds. Whole calls: 5 ms (a cache hit) to 2 min (a long generation).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)
# Seconds to the first token of a stream.
TTFT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)
# Seconds the gateway itself added: tenths of a millisecond to a quarter of a second.
OVERHEAD_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
)
# Tokens per call, the OpenTelemetry GenAI recommendation (powers of 4).
TOKEN_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
)


class Histogram:
    """Counts per bucket (``counts[i]``: observations <= ``bounds[i]``, not cumulative; the last
    slot is +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merge(self, other: Histogram) -> None:
        """Add ``other`` (same bounds) into this one: for series aggregated at scrape time."""
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum
