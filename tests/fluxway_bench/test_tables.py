"""fluxway_bench.tables: The markdown tables of each scenario and their formatting.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

import math

from fluxway_bench import stats, tables
from tests.fluxway_bench.support import wrk_result


def test_json_table_adds_latency_over_direct_and_ratios() -> None:
    rows = [
        tables.JsonRow("direct", wrk_result(40000, 0.5), wrk_result(30000, 0.025, 0.05)),
        tables.JsonRow("passthrough", wrk_result(4000, 8.0), wrk_result(2500, 0.4, 0.6), 40.0, 41.0),
        tables.JsonRow("fluxway", wrk_result(3000, 9.0), wrk_result(2000, 0.5, 0.9), 50.0, 55.0),
        tables.JsonRow("litellm", note="litellm exited during start-up"),
    ]
    rows[3].c32 = wrk_result(50, 400.0)
    table = tables.render_json_table(rows, 32)
    lines = table.splitlines()
    assert lines[0].startswith("| through | c=32 req/s |")
    flux = next(ln for ln in lines if ln.startswith("| fluxway"))
    assert "| 3,000 |" in flux and "| +0.475 ms |" in flux and "| +0.850 ms |" in flux and "50 / 55 MB" in flux
    assert tables.ratio_lines(rows, "c32") == [
        "- fluxway / passthrough: **75%** of the minimal pass-through's req/s",
        "- fluxway / litellm: **60.0x** LiteLLM's req/s",
    ]


def test_json_table_row_without_figures_shows_its_note() -> None:
    table = tables.render_json_table([tables.JsonRow("fluxway", note="not ready after 60s")], 32)
    assert table.splitlines()[-1].endswith("| not ready after 60s | - | - |")


def test_errors_column_flags_non_2xx() -> None:
    bad = stats.WrkResult(10, 1.0, 10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2, 7)
    table = tables.render_json_table([tables.JsonRow("fluxway", bad, None)], 32)
    assert "7 non-2xx, 2 socket" in table


def test_stream_table_ttfb_added() -> None:
    rows = [
        tables.StreamRow("direct", wrk_result(40000, 0.5), stats.TtfbResult(100, 0.2, 0.4, 0.3, 0)),
        tables.StreamRow(
            "fluxway", wrk_result(700, 40.0), stats.TtfbResult(100, 0.7, 5.0, 0.9, 0), 54.0, other_pct=12.4
        ),
    ]
    last = tables.render_stream_table(rows, 32).splitlines()[-1]
    assert "| +0.500 ms |" in last and "| 54 MB |" in last and "| 700 |" in last and last.endswith("| 12% |")


def test_failover_table() -> None:
    res = stats.summarize_open({"sent": 200, "ok": 200, "latency_all_ms": [1.0] * 200, "statuses": {"200": 200}})
    rows = [
        tables.FailoverRow("A fails 50%", "fluxway", 10, res, 266),
        tables.FailoverRow("A fails 50%", "litellm", note="x"),
    ]
    lines = tables.render_failover_table(rows).splitlines()
    assert "| fluxway | 10/s | 200 | 100.0% |" in lines[2] and "| 1.33 |" in lines[2] and "200: 200" in lines[2]
    assert "| x |" in lines[3]


def test_formatting() -> None:
    assert tables.fmt_ms(0.125) == "0.125 ms"
    assert tables.fmt_ms(2.7) == "2.70 ms"
    assert tables.fmt_ms(260.0) == "260 ms"
    assert tables.fmt_ms(math.nan) == "-"
    assert tables.fmt_added(0.5, 0.1) == "+0.400 ms"
    assert tables.fmt_added(0.1, 0.5) == "-0.400 ms"
    assert tables.fmt_int(139552.4) == "139,552"
