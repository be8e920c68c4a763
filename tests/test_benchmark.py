"""The benchmark harness's pure parts: fixtures, generated configs and scripts, parsing, statistics, tables.

Nothing here starts a server or measures time; the harness itself is exercised by `fluxway bench --smoke`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import orjson
import pytest

from fluxway import benchmark as b
from fluxway.config import parse
from fluxway.sse import SSEDecoder

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


def wrk_result(rps: float, p50: float, p99: float = 0.0) -> b.WrkResult:
    return b.WrkResult(int(rps * 10), 10.0, rps, p50, p50, p99 or p50 * 2, p99, p99, p50, 0, 0)


# -- fixtures -------------------------------------------------------------------------------------


def test_mock_json_is_an_openai_chat_completion() -> None:
    body = orjson.loads(b.chat_completion_body())
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["total_tokens"] == 19


def test_mock_stream_is_five_chunks_then_done() -> None:
    dec = SSEDecoder()
    events = dec.feed(b.sse_body()) + dec.flush()
    data = [e.data for e in events]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len(chunks) == 5
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Hello from the mock."


def test_chat_request_sets_stream_only_when_asked() -> None:
    assert "stream" not in b.chat_request()
    assert b.chat_request("m", stream=True) == {**b.chat_request("m"), "stream": True}


# -- generated files --------------------------------------------------------------------------------


def test_nginx_conf_serves_both_bodies_on_loopback(tmp_path: Path) -> None:
    conf = b.nginx_conf(9123, tmp_path)
    assert "listen 127.0.0.1:9123" in conf
    assert "location = /v1/chat/completions" in conf
    assert "location = /sse/v1/chat/completions" in conf
    assert str(tmp_path / "nginx.pid") in conf
    # The SSE body's blank lines survive as nginx escapes inside one quoted string.
    assert "\\n\\ndata: [DONE]\\n\\n'" in conf


def test_nginx_string_escapes_quotes_and_refuses_variables() -> None:
    assert b._nginx_string("it's \\ ok\n") == "'it\\'s \\\\ ok\\n'"
    with pytest.raises(ValueError):
        b._nginx_string("costs $5")


def test_lua_long_string_survives_closing_brackets() -> None:
    assert b._lua_long_string("plain") == "[[plain]]"
    assert b._lua_long_string("a]]b") == "[=[a]]b]=]"
    assert b._lua_long_string("a]]b]=]c") == "[==[a]]b]=]c]==]"


def test_wrk_script_posts_the_body_with_headers() -> None:
    script = b.wrk_script(b.chat_request("bench"), {"authorization": "Bearer k"})
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = [[{"model":"bench",' in script
    # A space keeps `[ [[...]] ]` from reading as a long-string opener `[[[`.
    assert "wrk.headers[ [[authorization]] ] = [[Bearer k]]" in script


def test_wrk_script_summary_line_is_what_parse_wrk_reads() -> None:
    script = b.wrk_script(b.chat_request(), {})
    fmt = re.search(r"string\.format\('(.*?)',\n", script, re.S)
    assert fmt is not None
    # Lua's string.format is C printf; Python's % operator formats the same conversions.
    line = fmt.group(1).replace("\\n", "\n") % (500, 2_000_000, 9000, 0, 0, 0, 4, 1, 250, 300, 900, 1500, 2000, 260.5)
    r = b.parse_wrk("noise\n" + line)
    assert r.requests == 500
    assert r.rps == 250.0
    assert (r.p50_ms, r.p99_ms, r.max_ms) == (0.25, 0.9, 2.0)
    assert (r.non2xx, r.socket_errors) == (4, 1)


def test_fluxway_config_is_valid_for_the_gateway(tmp_path: Path) -> None:
    ups = {"mock": "http://127.0.0.1:1/v1", "mock-sse": "http://127.0.0.1:1/sse/v1"}
    cfg = parse(b.fluxway_config(ups, 8401, f"sqlite:///{tmp_path}/x.db"), env={})
    assert cfg.auth.master_key is None
    bench = cfg.model(b.BENCH_MODEL)
    stream = cfg.model(b.STREAM_MODEL)
    assert bench is not None and [t.provider for t in bench.targets] == ["mock"]
    assert stream is not None and [t.provider for t in stream.targets] == ["mock-sse"]
    prov = cfg.provider("mock-sse")
    assert prov is not None and prov.base_url == "http://127.0.0.1:1/sse/v1"


def test_fluxway_failover_config_with_governance_and_extra(tmp_path: Path) -> None:
    ups = {"mock-a": "http://127.0.0.1:1/v1", "mock-b": "http://127.0.0.1:2/v1"}
    raw = b.fluxway_config(ups, 8401, "sqlite:///x.db", governance=True, model_extra={"hedge": {"after_ms": 50}})
    cfg = parse(raw, env={})
    assert cfg.auth.master_key == b.MASTER_KEY
    model = cfg.model(b.BENCH_MODEL)
    assert model is not None
    assert [t.provider for t in model.targets] == ["mock-a", "mock-b"]
    assert model.retry.attempts == 2 and model.retry.backoff_ms == 0
    assert model.hedge is not None and model.hedge.after_ms == 50
    assert cfg.model(b.STREAM_MODEL) is None


def test_failover_timeouts_reach_both_gateways() -> None:
    ups = {"mock-a": "http://127.0.0.1:1/v1", "mock-b": "http://127.0.0.1:2/v1"}
    cfg = parse(b.fluxway_config(ups, 8401, "sqlite:///x.db", first_token_s=2.0), env={})
    prov = cfg.provider("mock-a")
    assert prov is not None and prov.timeout.first_token == 2.0 and prov.timeout.connect == 2.0
    lite = b.litellm_config(ups, timeout_s=2.0)
    assert lite["router_settings"]["timeout"] == 2.0
    assert all(m["litellm_params"]["timeout"] == 2.0 for m in lite["model_list"])
    assert "timeout" not in b.litellm_config(ups)["router_settings"]


def test_litellm_config_mirrors_the_upstreams() -> None:
    cfg = b.litellm_config({"mock": "http://u/v1", "mock-sse": "http://u/sse/v1"}, retries=3)
    names = [(m["model_name"], m["litellm_params"]["api_base"]) for m in cfg["model_list"]]
    assert names == [(b.BENCH_MODEL, "http://u/v1"), (b.STREAM_MODEL, "http://u/sse/v1")]
    assert cfg["router_settings"]["num_retries"] == 3
    assert cfg["general_settings"]["master_key"] == b.MASTER_KEY


# -- parsing and statistics -------------------------------------------------------------------------


def test_parse_wrk_reads_the_summary_line() -> None:
    r = b.parse_wrk(WRK_OUTPUT)
    assert r.requests == 113330
    assert r.rps == pytest.approx(11333.0)
    assert r.p50_ms == pytest.approx(2.7)
    assert r.p99_ms == pytest.approx(4.8)
    assert r.non2xx == 3
    assert r.socket_errors == 3


def test_parse_wrk_without_summary_is_an_error() -> None:
    with pytest.raises(ValueError):
        b.parse_wrk("unable to connect to 127.0.0.1:9 Connection refused\n")


def test_percentile_interpolates() -> None:
    assert b.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert b.percentile([5.0], 99) == 5.0
    assert b.percentile(list(map(float, range(101))), 99) == 99.0
    assert math.isnan(b.percentile([], 50))


def test_summarize_open_counts_failures_in_latency() -> None:
    raw = {"sent": 4, "ok": 3, "latency_all_ms": [1.0, 2.0, 3.0, 100.0], "statuses": {"200": 3, "502": 1},
           "errors": {}, "attempts": {"1": 3, "2": 1}, "max_send_lag_ms": 0.5}
    r = b.summarize_open(raw)
    assert r.success_pct == 75.0
    assert r.max_ms == 100.0
    assert r.p50_ms == 2.5
    assert r.statuses == {"200": 3, "502": 1}


def test_summarize_ttfb() -> None:
    r = b.summarize_ttfb({"ttfb_ms": [1.0, 3.0], "total_ms": [2.0, 4.0], "bad": 1})
    assert (r.requests, r.ttfb_p50_ms, r.total_p50_ms, r.bad) == (2, 2.0, 3.0, 1)


def test_best_runs() -> None:
    a, c = wrk_result(100, 5.0), wrk_result(120, 6.0)
    assert b.best_throughput([a, c]) is c
    assert b.best_latency([a, c]) is a


# -- tables ----------------------------------------------------------------------------------------


def test_json_table_adds_latency_over_direct_and_ratios() -> None:
    rows = [
        b.JsonRow("direct", wrk_result(40000, 0.5), wrk_result(30000, 0.025, 0.05)),
        b.JsonRow("passthrough", wrk_result(4000, 8.0), wrk_result(2500, 0.4, 0.6), 40.0, 41.0),
        b.JsonRow("fluxway", wrk_result(3000, 9.0), wrk_result(2000, 0.5, 0.9), 50.0, 55.0),
        b.JsonRow("litellm", note="litellm exited during start-up"),
    ]
    rows[3].c32 = wrk_result(50, 400.0)
    table = b.render_json_table(rows, 32)
    lines = table.splitlines()
    assert lines[0].startswith("| through | c=32 req/s |")
    flux = next(ln for ln in lines if ln.startswith("| fluxway"))
    assert "| 3,000 |" in flux and "| +0.475 ms |" in flux and "| +0.850 ms |" in flux and "50 / 55 MB" in flux
    assert b.ratio_lines(rows, "c32") == [
        "- fluxway / passthrough: **75%** of the minimal pass-through's req/s",
        "- fluxway / litellm: **60.0x** LiteLLM's req/s",
    ]


def test_json_table_row_without_figures_shows_its_note() -> None:
    table = b.render_json_table([b.JsonRow("fluxway", note="not ready after 60s")], 32)
    assert table.splitlines()[-1].endswith("| not ready after 60s | - | - |")


def test_errors_column_flags_non_2xx() -> None:
    bad = b.WrkResult(10, 1.0, 10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2, 7)
    table = b.render_json_table([b.JsonRow("fluxway", bad, None)], 32)
    assert "7 non-2xx, 2 socket" in table


def test_stream_table_ttfb_added() -> None:
    rows = [
        b.StreamRow("direct", wrk_result(40000, 0.5), b.TtfbResult(100, 0.2, 0.4, 0.3, 0)),
        b.StreamRow("fluxway", wrk_result(700, 40.0), b.TtfbResult(100, 0.7, 5.0, 0.9, 0), 54.0, other_pct=12.4),
    ]
    last = b.render_stream_table(rows, 32).splitlines()[-1]
    assert "| +0.500 ms |" in last and "| 54 MB |" in last and "| 700 |" in last and last.endswith("| 12% |")


def test_failover_table() -> None:
    res = b.summarize_open({"sent": 200, "ok": 200, "latency_all_ms": [1.0] * 200, "statuses": {"200": 200}})
    rows = [b.FailoverRow("A fails 50%", "fluxway", 10, res, 266), b.FailoverRow("A fails 50%", "litellm", note="x")]
    lines = b.render_failover_table(rows).splitlines()
    assert "| fluxway | 10/s | 200 | 100.0% |" in lines[2] and "| 1.33 |" in lines[2] and "200: 200" in lines[2]
    assert "| x |" in lines[3]


def test_formatting() -> None:
    assert b.fmt_ms(0.125) == "0.125 ms"
    assert b.fmt_ms(2.7) == "2.70 ms"
    assert b.fmt_ms(260.0) == "260 ms"
    assert b.fmt_ms(math.nan) == "-"
    assert b.fmt_added(0.5, 0.1) == "+0.400 ms"
    assert b.fmt_added(0.1, 0.5) == "-0.400 ms"
    assert b.fmt_int(139552.4) == "139,552"


# -- command line ----------------------------------------------------------------------------------


def test_smoke_settings_write_nothing_and_run_short() -> None:
    s = b.settings_from_args(b.build_parser().parse_args(["--smoke", "all", "--targets", "direct,fluxway"]))
    assert s.scenarios == ("json", "stream", "failover")
    assert s.targets == ("direct", "fluxway")
    assert (s.duration, s.warmup, s.repeat, s.out_dir) == (1, 0, 1, None)


def test_default_settings() -> None:
    s = b.settings_from_args(b.build_parser().parse_args([]))
    assert s.scenarios == ("json", "stream")
    assert (s.duration, s.warmup, s.connections, s.repeat) == (10, 3, 32, 2)
    assert s.out_dir is not None and s.out_dir.name == "results"
    assert s.hedge_after_ms == 100.0
    assert (s.rate, s.high_rate, s.failover_duration) == (10.0, 100.0, 20)
    assert s.cases == ("fail", "slow")


@pytest.mark.parametrize(
    "argv",
    [["nope"], ["--targets", "direct,envoy"], ["--model-extra", "[1]"], ["--model-extra", "{bad"], ["--cases", "melt"]],
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        b.settings_from_args(b.build_parser().parse_args(argv))


def test_help_documents_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        b.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--duration", "--warmup", "--connections", "--smoke", "--governance", "--rate", "--targets"):
        assert flag in out


def test_load_line_reports_mean_and_max() -> None:
    assert b.load_line([]) == ""
    line = b.load_line([10.0, 30.0])
    assert "20% of all cores on average" in line and "30% at most" in line


def test_json_plot_is_valid_svg_with_a_bar_per_target() -> None:
    import xml.etree.ElementTree as ET

    rows = [
        b.JsonRow("direct", wrk_result(40000, 0.5), wrk_result(30000, 0.025)),
        b.JsonRow("fluxway", wrk_result(3000, 9.0), wrk_result(2000, 0.5)),
        b.JsonRow("litellm", note="not installed"),
    ]
    svg = b.scenario_svg("json", rows, 32)
    assert svg is not None
    root = ET.fromstring(svg)
    rects = [el for el in root.iter() if el.tag.endswith("rect")]
    # background + 2 throughput bars + 1 added-latency bar (direct has none, litellm has no figures)
    assert len(rects) == 4
    texts = [el.text for el in root.iter() if el.tag.endswith("text")]
    assert "3,000" in texts and "0.475" in texts
    assert b.scenario_svg("failover", [], 32) is None


def test_report_header_names_machine_versions_and_run_length() -> None:
    s = b.settings_from_args(b.build_parser().parse_args(["--smoke"]))
    info = {"nproc": 2, "cpu": "AMD EPYC", "mem_gb": 23.5, "kernel": "6.1"}
    head = b.report_header(b.TITLES["failover"], s, info, {"python": "3.11.7", "wrk": "4.1.0"}, "2026-01-01")
    assert "2 cores, AMD EPYC" in head and "python 3.11.7, wrk 4.1.0" in head
    assert f"{s.failover_duration} s per measured run" in head
    assert f"{s.duration} s per measured run" in b.report_header(b.TITLES["json"], s, info, {}, "2026-01-01")


def test_failure_line_prefers_the_last_exception() -> None:
    log = "INFO starting\nTraceback (most recent call last):\n  File x\nOSError: [Errno 98] address in use\n" \
          "client_session: <aiohttp.client.ClientSession object at 0x1>\n"
    assert b.failure_line(log) == "OSError: [Errno 98] address in use"
    assert b.failure_line("just this\n\n") == "just this"
    assert b.failure_line("") == "(no output)"
