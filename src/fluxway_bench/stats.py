"""Parsing and statistics: wrk's summary line, percentiles, TTFB and open-loop summaries."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fluxway_bench.fixtures import MARKER


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    socket_errors: int
    non2xx: int


def parse_wrk(output: str) -> WrkResult:
    """Read the summary line our wrk script prints (see :func:`wrk_script`)."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            d = json.loads(line[len(MARKER) :])
            duration = d["duration_us"] / 1e6
            return WrkResult(
                requests=int(d["requests"]),
                duration_s=duration,
                rps=d["requests"] / duration if duration > 0 else 0.0,
                p50_ms=d["p50_us"] / 1000,
                p90_ms=d["p90_us"] / 1000,
                p99_ms=d["p99_us"] / 1000,
                p999_ms=d["p999_us"] / 1000,
                max_ms=d["max_us"] / 1000,
                mean_ms=d["mean_us"] / 1000,
                socket_errors=int(d["connect"] + d["read"] + d["write"] + d["timeout"]),
                non2xx=int(d["status"]),
            )
    raise ValueError("no wrk summary line in the output (did wrk run our script?)")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class TtfbResult:
    requests: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    total_p50_ms: float
    bad: int


def summarize_ttfb(raw: dict[str, Any]) -> TtfbResult:
    ttfb = raw.get("ttfb_ms", [])
    return TtfbResult(
        requests=len(ttfb),
        ttfb_p50_ms=percentile(ttfb, 50),
        ttfb_p99_ms=percentile(ttfb, 99),
        total_p50_ms=percentile(raw.get("total_ms", []), 50),
        bad=int(raw.get("bad", 0)),
    )


@dataclass(frozen=True)
class OpenLoopResult:
    sent: int
    ok: int
    success_pct: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]
    attempts: dict[str, int]
    send_lag_ms: float


def summarize_open(raw: dict[str, Any]) -> OpenLoopResult:
    """Summarise an open-loop run. Latencies are over *every* request (failures included)."""
    lat = raw.get("latency_all_ms", [])
    sent = int(raw.get("sent", 0))
    ok = int(raw.get("ok", 0))
    return OpenLoopResult(
        sent=sent,
        ok=ok,
        success_pct=100.0 * ok / sent if sent else 0.0,
        p50_ms=percentile(lat, 50),
        p90_ms=percentile(lat, 90),
        p99_ms=percentile(lat, 99),
        max_ms=max(lat) if lat else math.nan,
        statuses={str(k): int(v) for k, v in raw.get("statuses", {}).items()},
        errors={str(k): int(v) for k, v in raw.get("errors", {}).items()},
        attempts={str(k): int(v) for k, v in raw.get("attempts", {}).items()},
        send_lag_ms=float(raw.get("max_send_lag_ms", 0.0)),
    )


def best_throughput(runs: Sequence[WrkResult]) -> WrkResult:
    return max(runs, key=lambda r: r.rps)


def best_latency(runs: Sequence[WrkResult]) -> WrkResult:
    return min(runs, key=lambda r: r.p50_ms)
