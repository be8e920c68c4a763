"""Helpers shared by the load test's tests."""

from __future__ import annotations

from fluxway_bench.stats import WrkResult


def wrk_result(rps: float, p50: float, p99: float = 0.0) -> WrkResult:
    return WrkResult(int(rps * 10), 10.0, rps, p50, p50, p99 or p50 * 2, p99, p99, p50, 0, 0)
