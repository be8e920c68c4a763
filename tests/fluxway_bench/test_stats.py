"""fluxway_bench.stats: Parsing wrk's summary line and the statistics of each kind of run.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

import math

import pytest

from fluxway_bench import stats
from tests.fluxway_bench.support import wrk_result

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:9000/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.70ms  412.00us   9.10ms   80.00%
  113330 requests in 10.00s, 60.1MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  11333.00
Transfer/sec:      6.01MB
FLUXWAY_BENCH {"requests":113330,"duration_us":10000000,"bytes":63000000,"connect":0,"read":1,"write":0,\
"status":3,"timeout":2,"p50_us":2700,"p90_us":3100,"p99_us":4800,"p999_us":7000,"max_us":9100,"mean_us":2712.50}
"""


def test_parse_wrk_reads_the_summary_line() -> None:
    r = stats.parse_wrk(WRK_OUTPUT)
    assert r.requests == 113330
    assert r.rps == pytest.approx(11333.0)
    assert r.p50_ms == pytest.approx(2.7)
    assert r.p99_ms == pytest.approx(4.8)
    assert r.non2xx == 3
    assert r.socket_errors == 3


def test_parse_wrk_without_summary_is_an_error() -> None:
    with pytest.raises(ValueError):
        stats.parse_wrk("unable to connect to 127.0.0.1:9 Connection refused\n")


def test_percentile_interpolates() -> None:
    assert stats.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert stats.percentile([5.0], 99) == 5.0
    assert stats.percentile(list(map(float, range(101))), 99) == 99.0
    assert math.isnan(stats.percentile([], 50))


def test_summarize_open_counts_failures_in_latency() -> None:
    raw = {
        "sent": 4,
        "ok": 3,
        "latency_all_ms": [1.0, 2.0, 3.0, 100.0],
        "statuses": {"200": 3, "502": 1},
        "errors": {},
        "attempts": {"1": 3, "2": 1},
        "max_send_lag_ms": 0.5,
    }
    r = stats.summarize_open(raw)
    assert r.success_pct == 75.0
    assert r.max_ms == 100.0
    assert r.p50_ms == 2.5
    assert r.statuses == {"200": 3, "502": 1}


def test_summarize_ttfb() -> None:
    r = stats.summarize_ttfb({"ttfb_ms": [1.0, 3.0], "total_ms": [2.0, 4.0], "bad": 1})
    assert (r.requests, r.ttfb_p50_ms, r.total_p50_ms, r.bad) == (2, 2.0, 3.0, 1)


def test_best_runs() -> None:
    a, c = wrk_result(100, 5.0), wrk_result(120, 6.0)
    assert stats.best_throughput([a, c]) is c
    assert stats.best_latency([a, c]) is a
