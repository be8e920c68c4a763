"""``fluxway bench``: the project's own load test (see PERFORMANCE.md, "Method").

It starts a mock upstream answering instantly (nginx: a fixed ``chat.completion`` JSON, and a 5-chunk
SSE stream under ``/sse``), the minimal Python pass-through (``bench/passthrough.py``), Fluxway
(``python -m fluxway serve``) and, when installed in ``bench/.venv-litellm``, the LiteLLM proxy, all
against the same mock; drives them with wrk (closed loop, c=32 and c=1) and ``bench/loadgen.py``
(time to first byte; open loop at a fixed rate against the fault-injecting ``bench/mock_upstream.py``);
and prints one markdown table per scenario, also written to ``bench/results/<date>-<scenario>.md``
and ``.json``. Pinning: the server under test on core 0, load generator and mock on core 1.

Scenarios: ``json`` (throughput, latency, RSS), ``stream`` (SSE throughput, time to first byte),
``failover`` (issue 4: one of two targets failing a fraction of the time, or with a slow first byte).

The pure parts (fixtures, config and script generation, wrk output parsing, statistics, tables) are
at the top and unit-tested; process handling is below them. Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

BENCH_MODEL = "bench"
STREAM_MODEL = "bench-stream"
UPSTREAM_MODEL = "bench-model"
MASTER_KEY = "sk-bench-master-7f3c9a1e5b2d4f608e1a9c3b5d7f9e2a"
UPSTREAM_KEY = "sk-mock"
MARKER = "FLUXWAY_BENCH "
ALL_TARGETS = ("direct", "passthrough", "fluxway", "litellm")
ALL_SCENARIOS = ("json", "stream", "failover")
FAILOVER_CASES = ("fail", "slow", "reset", "hang")
# Failover scenario: both gateways give up on a silent upstream after this long (the "hang" case).
FAILOVER_FIRST_TOKEN_S = 2.0
LOAD_CORE = 1
SERVER_CORE = 0

# ---------------------------------------------------------------------------------------------
# Fixtures: what the mock answers and what the load generator sends


def chat_request(model: str = BENCH_MODEL, stream: bool = False) -> dict[str, Any]:
    """The small chat request every load generator posts."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return body


def chat_completion_body() -> bytes:
    """The fixed OpenAI ``chat.completion`` the mock upstream returns."""
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": UPSTREAM_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        "system_fingerprint": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def sse_frames() -> list[bytes]:
    """Five ``chat.completion.chunk`` events then ``[DONE]``, each a complete SSE frame."""
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": "Hello"}, None),
        ({"content": " from"}, None),
        ({"content": " the"}, None),
        ({"content": " mock."}, None),
        ({}, "stop"),
    ]
    frames = []
    for delta, finish in deltas:
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": UPSTREAM_MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        frames.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    return frames


def sse_body() -> bytes:
    return b"".join(sse_frames())


# ---------------------------------------------------------------------------------------------
# Generated files: nginx config, wrk scripts, gateway configs


def _nginx_string(text: str) -> str:
    """Quote ``text`` for an nginx config (single quotes; ``$`` would start a variable)."""
    if "$" in text:
        raise ValueError("nginx return bodies cannot contain '$'")
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def nginx_conf(port: int, workdir: Path) -> str:
    """A self-contained nginx config: one worker on loopback, answers from memory, no logs."""
    temp = {name: workdir / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path {temp["client_body"]};
  proxy_temp_path {temp["proxy"]};
  fastcgi_temp_path {temp["fastcgi"]};
  uwsgi_temp_path {temp["uwsgi"]};
  scgi_temp_path {temp["scgi"]};
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /v1/chat/completions {{
      default_type application/json;
      return 200 {_nginx_string(chat_completion_body().decode())};
    }}
    location = /sse/v1/chat/completions {{
      default_type text/event-stream;
      add_header cache-control no-cache;
      return 200 {_nginx_string(sse_body().decode())};
    }}
    location = /v1/models {{
      default_type application/json;
      return 200 '{{"object":"list","data":[{{"id":"{UPSTREAM_MODEL}","object":"model"}}]}}';
    }}
    location / {{ return 404; }}
  }}
}}
"""


def _lua_long_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def wrk_script(body: dict[str, Any], headers: dict[str, str]) -> str:
    """A wrk Lua script posting ``body`` and printing one machine-readable summary line."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {_lua_long_string(json.dumps(body, separators=(',', ':')))}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    for name, value in headers.items():
        lines.append(f"wrk.headers[ {_lua_long_string(name)} ] = {_lua_long_string(value)}")
    lines.append(
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        f"  io.write(string.format('{MARKER}"
        '{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,'
        '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,'
        '"max_us":%d,"mean_us":%.2f}\\n\',\n'
        "    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,\n"
        "    e.status, e.timeout, latency:percentile(50), latency:percentile(90),\n"
        "    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))\n"
        "end"
    )
    return "\n".join(lines) + "\n"


def fluxway_config(
    upstreams: dict[str, str],
    port: int,
    store_url: str,
    *,
    governance: bool = False,
    strategy: str = "weighted",
    model_extra: dict[str, Any] | None = None,
    first_token_s: float | None = None,
) -> dict[str, Any]:
    """A Fluxway config: one ``openai`` provider per upstream base URL (``name -> base``).

    Public model ``bench`` routes to every upstream whose name does not end in ``-sse``;
    ``bench-stream`` to the ``-sse`` ones (the nginx mock streams on a separate path).
    """
    providers: list[dict[str, Any]] = [
        {"name": name, "type": "openai", "base_url": base, "api_keys": [UPSTREAM_KEY]}
        for name, base in upstreams.items()
    ]
    if first_token_s is not None:
        for prov in providers:
            prov["timeout"] = {"connect": first_token_s, "first_token": first_token_s, "total": 60}
    plain = [n for n in upstreams if not n.endswith("-sse")]
    sse = [n for n in upstreams if n.endswith("-sse")]
    models: list[dict[str, Any]] = []
    if plain:
        model: dict[str, Any] = {
            "name": BENCH_MODEL,
            "strategy": strategy,
            "targets": [{"provider": n, "model": UPSTREAM_MODEL} for n in plain],
        }
        if len(plain) > 1:
            model["retry"] = {"attempts": 2, "backoff_ms": 0}
        model.update(model_extra or {})
        models.append(model)
    if sse:
        models.append({"name": STREAM_MODEL, "targets": [{"provider": n, "model": UPSTREAM_MODEL} for n in sse]})
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "workers": 1},
        "store": {"url": store_url},
        "providers": providers,
        "models": models,
    }
    if governance:
        cfg["auth"] = {"master_key": MASTER_KEY}
    return cfg


def litellm_config(upstreams: dict[str, str], *, retries: int = 2, timeout_s: float | None = None) -> dict[str, Any]:
    """The LiteLLM proxy config equivalent to :func:`fluxway_config` (same models, same upstreams)."""
    model_list = []
    for name, base in upstreams.items():
        params: dict[str, Any] = {"model": f"openai/{UPSTREAM_MODEL}", "api_base": base, "api_key": UPSTREAM_KEY}
        if timeout_s is not None:
            params["timeout"] = timeout_s
            params["stream_timeout"] = timeout_s
        model_list.append({"model_name": STREAM_MODEL if name.endswith("-sse") else BENCH_MODEL,
                           "litellm_params": params})
    router: dict[str, Any] = {"num_retries": retries, "retry_after": 0, "routing_strategy": "simple-shuffle"}
    if timeout_s is not None:
        router["timeout"] = timeout_s
    return {
        "model_list": model_list,
        "router_settings": router,
        "litellm_settings": {"num_retries": retries, "telemetry": False},
        # LiteLLM refuses to start without a master key; checking it costs no store lookup.
        "general_settings": {"master_key": MASTER_KEY},
    }


# ---------------------------------------------------------------------------------------------
# Parsing and statistics


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
            d = json.loads(line[len(MARKER):])
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


# ---------------------------------------------------------------------------------------------
# Tables


def fmt_ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) < 1:
        return f"{value:.3f} ms"
    if abs(value) < 100:
        return f"{value:.2f} ms"
    return f"{value:.0f} ms"


def fmt_added(value: float | None, base: float | None) -> str:
    if value is None or base is None or math.isnan(value) or math.isnan(base):
        return "-"
    diff = value - base
    sign = "+" if diff >= 0 else "-"
    return sign + fmt_ms(abs(diff))


def fmt_int(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.0f}"


def fmt_mb(idle: float | None, loaded: float | None) -> str:
    if idle is None and loaded is None:
        return "-"
    a = f"{idle:.0f}" if idle is not None else "?"
    b = f"{loaded:.0f}" if loaded is not None else "?"
    return f"{a} / {b} MB"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _errors(*runs: WrkResult | None) -> str:
    sock = sum(r.socket_errors for r in runs if r)
    bad = sum(r.non2xx for r in runs if r)
    if not sock and not bad:
        return "0"
    parts = []
    if bad:
        parts.append(f"{bad:,} non-2xx")
    if sock:
        parts.append(f"{sock:,} socket")
    return ", ".join(parts)


@dataclass
class JsonRow:
    through: str
    c32: WrkResult | None = None
    c1: WrkResult | None = None
    rss_idle_mb: float | None = None
    rss_load_mb: float | None = None
    note: str = ""
    other_pct: float | None = None


def ratio_lines(rows: Sequence[JsonRow | StreamRow], metric: str) -> list[str]:
    """"fluxway / passthrough" and "fluxway / litellm" for a req/s metric of the rows."""
    by = {r.through: r for r in rows}

    def value(name: str) -> float | None:
        row = by.get(name)
        result = getattr(row, metric, None) if row else None
        return result.rps if isinstance(result, WrkResult) and result.rps > 0 else None

    flux, passthrough, litellm = value("fluxway"), value("passthrough"), value("litellm")
    lines = []
    if flux and passthrough:
        lines.append(f"- fluxway / passthrough: **{flux / passthrough:.0%}** of the minimal pass-through's req/s")
    if flux and litellm:
        lines.append(f"- fluxway / litellm: **{flux / litellm:.1f}x** LiteLLM's req/s")
    return lines


def render_json_table(rows: Sequence[JsonRow], connections: int) -> str:
    direct = next((r for r in rows if r.through == "direct"), None)
    d50 = direct.c1.p50_ms if direct and direct.c1 else None
    d99 = direct.c1.p99_ms if direct and direct.c1 else None
    c = connections
    header = [
        "through", f"c={c} req/s", f"c={c} p50", f"c={c} p99", "c=1 p50", "added c=1 p50",
        "c=1 p99", "added c=1 p99", "errors", "RSS idle / loaded", "other work",
    ]
    body = []
    for r in rows:
        if r.c32 is None and r.c1 is None:
            body.append([r.through, *(["-"] * 8), r.note or "-", "-", "-"])
            continue
        added50 = fmt_added(r.c1.p50_ms, d50) if r.c1 and r.through != "direct" else "-"
        added99 = fmt_added(r.c1.p99_ms, d99) if r.c1 and r.through != "direct" else "-"
        body.append([
            r.through,
            fmt_int(r.c32.rps if r.c32 else None),
            fmt_ms(r.c32.p50_ms if r.c32 else None),
            fmt_ms(r.c32.p99_ms if r.c32 else None),
            fmt_ms(r.c1.p50_ms if r.c1 else None),
            added50,
            fmt_ms(r.c1.p99_ms if r.c1 else None),
            added99,
            _errors(r.c32, r.c1),
            fmt_mb(r.rss_idle_mb, r.rss_load_mb),
            fmt_pct(r.other_pct),
        ])
    return _table(header, body)


@dataclass
class StreamRow:
    through: str
    c32: WrkResult | None = None
    ttfb: TtfbResult | None = None
    rss_load_mb: float | None = None
    note: str = ""
    other_pct: float | None = None


def render_stream_table(rows: Sequence[StreamRow], connections: int) -> str:
    direct = next((r for r in rows if r.through == "direct"), None)
    d_ttfb = direct.ttfb.ttfb_p50_ms if direct and direct.ttfb else None
    c = connections
    header = [
        "through", f"c={c} streams/s", f"c={c} p50 (whole stream)", "c=1 TTFB p50", "added TTFB p50",
        "c=1 TTFB p99", "errors", "RSS loaded", "other work",
    ]
    body = []
    for r in rows:
        if r.c32 is None and r.ttfb is None:
            body.append([r.through, *(["-"] * 6), r.note or "-", "-"])
            continue
        errors = _errors(r.c32)
        if r.ttfb and r.ttfb.bad:
            errors = f"{errors}; {r.ttfb.bad} bad TTFB answers"
        body.append([
            r.through,
            fmt_int(r.c32.rps if r.c32 else None),
            fmt_ms(r.c32.p50_ms if r.c32 else None),
            fmt_ms(r.ttfb.ttfb_p50_ms if r.ttfb else None),
            fmt_added(r.ttfb.ttfb_p50_ms, d_ttfb) if r.ttfb and r.through != "direct" else "-",
            fmt_ms(r.ttfb.ttfb_p99_ms if r.ttfb else None),
            errors,
            f"{r.rss_load_mb:.0f} MB" if r.rss_load_mb is not None else "-",
            fmt_pct(r.other_pct),
        ])
    return _table(header, body)


@dataclass
class FailoverRow:
    case: str
    through: str
    rate: float = 0.0
    result: OpenLoopResult | None = None
    upstream_calls: int = 0
    note: str = ""
    other_pct: float | None = None


def render_failover_table(rows: Sequence[FailoverRow]) -> str:
    header = ["case", "through", "rate", "requests", "success", "p50", "p90", "p99", "max", "statuses",
              "upstream calls / request", "other work"]
    body = []
    for r in rows:
        res = r.result
        if res is None:
            body.append([r.case, r.through, f"{r.rate:g}/s", *(["-"] * 6), r.note or "-", "-", "-"])
            continue
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(res.statuses.items()))
        if res.errors:
            statuses += "; " + ", ".join(f"{k}: {v}" for k, v in sorted(res.errors.items()))
        calls = f"{r.upstream_calls / res.sent:.2f}" if res.sent and r.upstream_calls else "-"
        body.append([
            r.case, r.through, f"{r.rate:g}/s", fmt_int(res.sent), f"{res.success_pct:.1f}%", fmt_ms(res.p50_ms),
            fmt_ms(res.p90_ms), fmt_ms(res.p99_ms), fmt_ms(res.max_ms), statuses, calls, fmt_pct(r.other_pct),
        ])
    return _table(header, body)


Panel = tuple[str, list[tuple[str, float]], bool]  # title, (label, value) bars, log scale


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg_bars(title: str, panels: Sequence[Panel], highlight: str = "fluxway") -> str:
    """A small self-contained SVG of horizontal bar panels (no plotting library needed)."""
    width, label_w, bar_w, row_h = 720, 150, 460, 22
    y = 34
    parts: list[str] = [f'<text x="10" y="22" font-size="15" font-weight="bold">{_xml(title)}</text>']
    for name, bars, log in panels:
        y += 10
        parts.append(f'<text x="10" y="{y + 12}" font-size="13">{_xml(name)}</text>')
        y += 20
        finite = [v for _, v in bars if v > 0 and math.isfinite(v)]
        top = max(finite, default=1.0)
        low = min(finite, default=1.0)
        for label, value in bars:
            if value > 0 and math.isfinite(value):
                if log:
                    span = math.log10(top) - math.log10(low) + 1
                    frac = (math.log10(value) - math.log10(low) + 1) / span
                else:
                    frac = value / top
            else:
                frac = 0.0
            w = max(1.0, frac * bar_w)
            color = "#d9480f" if label.startswith(highlight) else "#4c6ef5"
            text = fmt_int(value) if value >= 100 else f"{value:.3g}"
            parts.append(f'<text x="10" y="{y + 15}" font-size="12">{_xml(label)}</text>')
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}"/>')
            parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{_xml(text)}</text>')
            y += row_h
    y += 10
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}" '
            'font-family="sans-serif">')
    return "\n".join([head, f'<rect width="{width}" height="{y}" fill="white"/>', *parts, "</svg>"]) + "\n"


def scenario_svg(name: str, rows: Sequence[Any], connections: int) -> str | None:
    """The plot committed beside a scenario's table (json and stream; None for others)."""
    if name == "json":
        direct = next((r.c1.p50_ms for r in rows if r.through == "direct" and r.c1), None)
        rps = [(r.through, r.c32.rps) for r in rows if r.c32]
        added = [(r.through, r.c1.p50_ms - direct) for r in rows if r.c1 and direct is not None
                 and r.through != "direct"]
        return svg_bars("JSON chat completions, one worker", [
            (f"c={connections} requests/s (log scale)", rps, True),
            ("added latency at c=1, p50 (ms)", added, False),
        ])
    if name == "stream":
        direct = next((r.ttfb.ttfb_p50_ms for r in rows if r.through == "direct" and r.ttfb), None)
        sps = [(r.through, r.c32.rps) for r in rows if r.c32]
        added = [(r.through, r.ttfb.ttfb_p50_ms - direct) for r in rows if r.ttfb and direct is not None
                 and r.through != "direct"]
        return svg_bars("Streaming (5-chunk SSE), one worker", [
            (f"c={connections} streams/s (log scale)", sps, True),
            ("added time to first byte at c=1, p50 (ms)", added, False),
        ])
    return None


# ---------------------------------------------------------------------------------------------
# Machine and versions


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gb": mem_gb, "kernel": platform.release()}


def _run_text(cmd: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout + proc.stderr).strip()


def versions(litellm_python: Path | None, repo: Path | None) -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {"python": platform.python_version()}
    for dist in ("fluxway", "aiohttp", "orjson", "granian", "uvicorn", "uvloop", "httptools", "starlette"):
        with suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    nginx = _run_text(["nginx", "-v"])
    if nginx:
        out["nginx"] = nginx.rsplit("/", 1)[-1]
    wrk = _run_text(["wrk", "-v"]).splitlines()
    if wrk:
        out["wrk"] = wrk[0].split(" [")[0].removeprefix("wrk ")
    if litellm_python is not None:
        ver = _run_text([str(litellm_python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"])
        if ver:
            out["litellm"] = ver.splitlines()[-1]
    if repo is not None:
        commit = _run_text(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
        if commit and " " not in commit:
            out["fluxway_commit"] = commit
    return out


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pinned(cmd: Sequence[str], core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(core), *cmd]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_busy_ticks() -> int:
    """Busy CPU time of the whole machine (all cores) in clock ticks, steal included."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0
    vals = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(vals) - vals[3] - vals[4]


def _proc_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


class CpuMeter:
    """How much of the machine *other* work used while we measured: busy time minus our processes'."""

    def __init__(self, sessions: Sequence[int]) -> None:
        self.sessions = list(sessions)
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.ncpu = os.cpu_count() or 1
        self.t0 = time.monotonic()
        self.busy0 = _cpu_busy_ticks()
        self.ours0 = self._ours()

    def _ours(self) -> float:
        import resource

        ticks = sum(_proc_ticks(p) for sid in self.sessions for p in _session_pids(sid))
        cpu = 0.0
        for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF):
            usage = resource.getrusage(who)
            cpu += usage.ru_utime + usage.ru_stime
        return ticks + cpu * self.hz

    def others_pct(self) -> float:
        """Percent of all cores used by other processes since construction (0-100)."""
        elapsed = time.monotonic() - self.t0
        if elapsed <= 0:
            return 0.0
        others = (_cpu_busy_ticks() - self.busy0) - (self._ours() - self.ours0)
        return max(0.0, min(100.0, 100.0 * others / (elapsed * self.hz * self.ncpu)))


class Service:
    """A server started in its own session (so it and its workers stop together), output to a log."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path, *, core: int | None, cwd: Path | None = None):
        self.name = name
        self.cmd = _pinned(cmd, core)
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.cwd, start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        """RSS of the largest process of the server (its worker), in MB."""
        if self.proc is None:
            return 0.0
        return max((_rss_mb(p) for p in _session_pids(self.proc.pid)), default=0.0)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Workers that outlived their parent are in the same session.
        for pid in _session_pids(self.proc.pid):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None


def http_request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def failure_line(log: str) -> str:
    """The line of a server's log that best says why it died: its last exception, else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Exit")) and " " not in head:
            return ln
    return lines[-1] if lines else "(no output)"


def wait_ready(service: Service, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            tail = service.log_tail(40)
            raise RuntimeError(f"{service.name} exited during start-up: {failure_line(tail)}\n{tail}")
        try:
            status, _ = http_request(url, timeout=2)
            if status < 500:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} not ready after {timeout:.0f}s ({url}):\n{service.log_tail()}")


def ensure_tool(name: str, package: str, log: list[str]) -> str:
    """The path of ``name``; installs the Debian ``package`` with apt-get when missing (root only)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log.append(f"installed {package} with apt-get")
        for step in (["apt-get", "install", "-y", "-q", package], ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", package]):
            done = subprocess.run(step, check=False, capture_output=True)
            if step[1] == "install" and done.returncode == 0:
                break
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if found:
            return found
    raise RuntimeError(f"{name} is not installed (apt-get install -y {package})")


# ---------------------------------------------------------------------------------------------
# The harness


@dataclass
class Settings:
    scenarios: tuple[str, ...]
    targets: tuple[str, ...]
    duration: int
    warmup: int
    connections: int
    repeat: int
    governance: bool
    pin: bool
    passthrough_server: str
    rate: float
    failover_duration: int
    fail_rate: float
    fail_status: int
    slow_rate: float
    slow_ms: float
    upstream_delay_ms: float
    model_extra: dict[str, Any]
    hedge_after_ms: float | None
    high_rate: float
    wait_quiet: float
    cases: tuple[str, ...]
    bench_dir: Path
    litellm: Path | None
    out_dir: Path | None
    print_json: bool
    keep_logs: bool


@dataclass
class Endpoint:
    """Where the load goes for one target: URL of the JSON and streaming routes + auth headers."""

    json_url: str
    stream_url: str
    headers: dict[str, str] = field(default_factory=dict)
    json_model: str = BENCH_MODEL
    stream_model: str = STREAM_MODEL


@dataclass
class Live:
    """A started target, ready for load: where to send it and the wrk script that does."""

    target: str
    svc: Service | None
    url: str
    model: str
    key: str
    script: Path


T = TypeVar("T")


class Harness:
    def __init__(self, settings: Settings, workdir: Path, stack: ExitStack) -> None:
        self.s = settings
        self.work = workdir
        self.stack = stack
        self.notes: list[str] = []
        self.nginx_port = 0
        self.wrk = ""
        self.services: list[Service] = []
        # Share of the machine other processes used during each measured run (percent of all cores).
        self.other_load: list[float] = []

    def core(self, which: int) -> int | None:
        return which if self.s.pin else None

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    def service(self, name: str, cmd: Sequence[str], core: int | None, cwd: Path | None = None) -> Service:
        svc = Service(name, cmd, self.work / f"{name}.log", core=core, cwd=cwd).start()
        self.stack.callback(svc.stop)
        self.services.append(svc)
        return svc

    def meter(self) -> CpuMeter:
        return CpuMeter([svc.proc.pid for svc in self.services if svc.proc is not None and svc.alive()])

    def wait_quiet(self) -> None:
        """Before a measured run: wait (up to ``--wait-quiet`` s) until other work uses < 25% of the machine."""
        deadline = time.monotonic() + self.s.wait_quiet
        busy = 0.0
        while time.monotonic() < deadline:
            meter = self.meter()
            time.sleep(1.0)
            busy = meter.others_pct()
            if busy < 25:
                return
        if self.s.wait_quiet > 0:
            self.log(f"machine still busy with other work ({busy:.0f}% of all cores); measuring anyway")

    # -- upstreams ------------------------------------------------------------------------------

    def start_nginx(self) -> None:
        nginx = ensure_tool("nginx", "nginx", self.notes)
        self.wrk = ensure_tool("wrk", "wrk", self.notes)
        self.nginx_port = free_port()
        conf = self.work / "nginx.conf"
        conf.write_text(nginx_conf(self.nginx_port, self.work))
        svc = self.service("nginx", [nginx, "-c", str(conf), "-p", str(self.work)], self.core(LOAD_CORE))
        wait_ready(svc, f"http://127.0.0.1:{self.nginx_port}/v1/models", 15)

    @property
    def nginx(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def start_fault_mock(self, name: str, *extra: str) -> tuple[Service, str]:
        port = free_port()
        cmd = [sys.executable, str(self.s.bench_dir / "mock_upstream.py"), "--port", str(port),
               "--delay-ms", str(self.s.upstream_delay_ms), *extra]
        svc = self.service(name, cmd, self.core(LOAD_CORE))
        url = f"http://127.0.0.1:{port}"
        wait_ready(svc, url + "/stats", 20)
        return svc, url

    # -- servers under test ------------------------------------------------------------------------

    def start_target(
        self, target: str, upstreams: dict[str, str], model_extra: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[Service | None, Endpoint]:
        """Start ``target`` in front of ``upstreams``; one retry (a free port can be taken meanwhile)."""
        try:
            return self._start_target(target, upstreams, model_extra, timeout_s)
        except RuntimeError as exc:
            self.log(f"{target} did not start ({_first_line(exc)}); retrying once:\n{exc}")
            return self._start_target(target, upstreams, model_extra, timeout_s)

    def _start_target(
        self, target: str, upstreams: dict[str, str], model_extra: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[Service | None, Endpoint]:
        """Start ``target`` in front of ``upstreams`` (``name -> base URL``; ``*-sse`` for streams)."""
        if target == "direct":
            base = next(iter(upstreams.values()))
            sse = upstreams.get("mock-sse", base)
            return None, Endpoint(f"{base}/chat/completions", f"{sse}/chat/completions")
        port = free_port()
        local = f"http://127.0.0.1:{port}"
        if target == "passthrough":
            if self.s.passthrough_server == "granian" and importlib.util.find_spec("granian") is None:
                self.notes.append("installed granian with pip")
                subprocess.run([sys.executable, "-m", "pip", "install", "-q", "granian"], check=False)
            origin = next(iter(upstreams.values())).removesuffix("/v1")
            app = ["env", f"PASSTHROUGH_UPSTREAM={origin}"]
            if self.s.passthrough_server == "uvicorn":
                cmd = [*app, sys.executable, "-m", "uvicorn", "passthrough:app", "--host", "127.0.0.1", "--port",
                       str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level",
                       "warning", "--backlog", "4096"]
            else:
                cmd = [*app, sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
                       "--workers", "1", "--host", "127.0.0.1", "--port", str(port), "--no-ws",
                       "--log-level", "warning", "--backlog", "4096", "passthrough:app"]
            svc = self.service("passthrough", cmd, self.core(SERVER_CORE), cwd=self.s.bench_dir)
            self.ready(svc, local + "/", 30)
            return svc, Endpoint(f"{local}/v1/chat/completions", f"{local}/sse/v1/chat/completions")
        if target == "fluxway":
            cfg = fluxway_config(
                upstreams, port, f"sqlite:///{self.work / f'fluxway-{port}.db'}",
                governance=self.s.governance, model_extra=self.s.model_extra if model_extra is None else model_extra,
                first_token_s=timeout_s,
            )
            path = self.work / "fluxway.yaml"
            path.write_text(json.dumps(cfg, indent=2))
            cmd = [sys.executable, "-m", "fluxway", "serve", "--config", str(path), "--port", str(port),
                   "--workers", "1"]
            svc = self.service("fluxway", cmd, self.core(SERVER_CORE))
            self.ready(svc, local + "/health/live", 60)
            headers = self.fluxway_auth(local) if self.s.governance else {}
            return svc, Endpoint(f"{local}/v1/chat/completions", f"{local}/v1/chat/completions", headers)
        if target == "litellm":
            if self.s.litellm is None:
                raise RuntimeError("LiteLLM is not installed (bench/install_litellm.sh)")
            path = self.work / "litellm.yaml"
            path.write_text(json.dumps(litellm_config(upstreams, timeout_s=timeout_s), indent=2))
            cmd = ["env", "LITELLM_LOCAL_MODEL_COST_MAP=True", "LITELLM_LOG=ERROR", "LITELLM_TELEMETRY=False",
                   str(self.s.litellm), "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
                   "--num_workers", "1"]
            svc = self.service("litellm", cmd, self.core(SERVER_CORE))
            self.ready(svc, local + "/health/liveliness", 180)
            auth = {"authorization": f"Bearer {MASTER_KEY}"}
            return svc, Endpoint(f"{local}/v1/chat/completions", f"{local}/v1/chat/completions", auth)
        raise ValueError(f"unknown target {target!r}")

    def ready(self, svc: Service, url: str, timeout: float) -> None:
        try:
            wait_ready(svc, url, timeout)
        except RuntimeError:
            svc.stop()
            raise

    def fluxway_auth(self, base: str) -> dict[str, str]:
        """Governance on: create a virtual key with the master key and load with it."""
        body = json.dumps({"name": "bench", "models": [BENCH_MODEL, STREAM_MODEL]}).encode()
        headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
        try:
            status, data = http_request(base + "/admin/keys", body, headers)
            key = json.loads(data).get("key") if status in (200, 201) else None
        except (OSError, ValueError, urllib.error.URLError):
            status, key = 0, None
        if isinstance(key, str) and key:
            self.notes.append("governance: load sent with a virtual key created through POST /admin/keys")
            return {"authorization": f"Bearer {key}"}
        self.notes.append(f"governance: POST /admin/keys answered {status}; load sent with the master key instead")
        return {"authorization": f"Bearer {MASTER_KEY}"}

    # -- load -------------------------------------------------------------------------------------

    def check(self, name: str, url: str, body: dict[str, Any], headers: dict[str, str], stream: bool) -> None:
        """One request before measuring: a target answering errors fast must not look fast."""
        status, data = http_request(url, json.dumps(body).encode(), {"content-type": "application/json", **headers})
        ok = status == 200 and ((b"[DONE]" in data) if stream else (b'"choices"' in data))
        if not ok:
            raise RuntimeError(f"{name}: sanity request answered {status}: {data[:300]!r}")

    def wrk_run(self, url: str, script: Path, connections: int, duration: int, svc: Service | None,
                measured: bool = True) -> tuple[WrkResult, float]:
        cmd = _pinned([self.wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
                       "-s", str(script), url], self.core(LOAD_CORE))
        if measured:
            self.wait_quiet()
        meter = self.meter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        peak = 0.0
        while proc.poll() is None:
            if svc is not None:
                peak = max(peak, svc.rss_mb())
            time.sleep(0.25)
        if measured:
            self.other_load.append(meter.others_pct())
        out = proc.stdout.read() if proc.stdout else ""
        try:
            return parse_wrk(out), peak
        except ValueError:
            last = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "no output")
            raise RuntimeError(f"wrk failed: {last.strip()}\n{out[-2000:]}") from None

    def loadgen(self, *args: str) -> dict[str, Any]:
        cmd = _pinned([sys.executable, str(self.s.bench_dir / "loadgen.py"), *args], self.core(LOAD_CORE))
        self.wait_quiet()
        meter = self.meter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        self.other_load.append(meter.others_pct())
        if proc.returncode != 0:
            raise RuntimeError(f"loadgen failed: {proc.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    def script(self, name: str, body: dict[str, Any], headers: dict[str, str]) -> Path:
        path = self.work / f"{name}.lua"
        path.write_text(wrk_script(body, headers))
        return path

    # -- scenarios --------------------------------------------------------------------------------

    def nginx_upstreams(self) -> dict[str, str]:
        return {"mock": f"{self.nginx}/v1", "mock-sse": f"{self.nginx}/sse/v1"}

    def other_since(self, mark: int) -> float | None:
        """Mean share of the machine other work used over the measured runs since ``mark``."""
        runs = self.other_load[mark:]
        return sum(runs) / len(runs) if runs else None

    def start_all(self, scenario: str, stream: bool, notes: dict[str, str]) -> list[Live]:
        """Start every target at once (idle ones cost nothing) so their runs can be interleaved."""
        live = []
        for target in self.s.targets:
            self.log(f"{scenario}: starting {target}")
            try:
                svc, ep = self.start_target(target, self.nginx_upstreams())
            except RuntimeError as exc:
                notes[target] = _first_line(exc)
                self.log(f"{scenario}: {target} skipped: {exc}")
                continue
            model, url = (ep.stream_model, ep.stream_url) if stream else (ep.json_model, ep.json_url)
            body = chat_request(model, stream)
            try:
                self.check(target, url, body, ep.headers, stream)
            except (RuntimeError, OSError) as exc:
                notes[target] = _first_line(exc)
                self.log(f"{scenario}: {target} skipped: {exc}")
                if svc:
                    svc.stop()
                continue
            key = ep.headers.get("authorization", "").removeprefix("Bearer ")
            live.append(Live(target, svc, url, model, key, self.script(f"{scenario}-{target}", body, ep.headers)))
        return live

    def rounds(self, live: Sequence[Live], scenario: str, run: Callable[[Live], T], notes: dict[str, str],
               others: dict[str, list[float]]) -> dict[str, list[T]]:
        """``--repeat`` rounds of ``run`` over every live target in turn (so noise hits them alike)."""
        out: dict[str, list[T]] = {lv.target: [] for lv in live}
        for _ in range(self.s.repeat):
            for lv in live:
                if lv.target in notes:
                    continue
                mark = len(self.other_load)
                try:
                    out[lv.target].append(run(lv))
                except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
                    notes[lv.target] = _first_line(exc)
                    self.log(f"{scenario}: {lv.target} failed: {exc}")
                finally:
                    others.setdefault(lv.target, []).extend(self.other_load[mark:])
        return out

    def warm(self, live: Sequence[Live]) -> None:
        if not self.s.warmup:
            return
        for lv in live:
            with suppress(RuntimeError):
                self.wrk_run(lv.url, lv.script, self.s.connections, self.s.warmup, None, measured=False)

    def run_json(self) -> list[JsonRow]:
        notes: dict[str, str] = {}
        others: dict[str, list[float]] = {}
        rows = [JsonRow(t) for t in self.s.targets]
        live = self.start_all("json", False, notes)
        try:
            idle = {lv.target: lv.svc.rss_mb() if lv.svc else None for lv in live}
            self.warm(live)
            self.log(f"json: c={self.s.connections} rounds")
            c32 = self.rounds(live, "json", lambda lv: self.wrk_run(
                lv.url, lv.script, self.s.connections, self.s.duration, lv.svc), notes, others)
            self.log("json: c=1 rounds")
            c1 = self.rounds(live, "json", lambda lv: self.wrk_run(
                lv.url, lv.script, 1, self.s.duration, None)[0], notes, others)
        finally:
            for lv in live:
                if lv.svc:
                    lv.svc.stop()
        for row in rows:
            t = row.through
            row.note = notes.get(t, "")
            row.rss_idle_mb = idle.get(t)
            if c32.get(t):
                row.c32 = best_throughput([r for r, _ in c32[t]])
                row.rss_load_mb = max(p for _, p in c32[t]) if idle.get(t) is not None else None
            if c1.get(t):
                row.c1 = best_latency(c1[t])
            if others.get(t):
                row.other_pct = sum(others[t]) / len(others[t])
        return rows

    def run_stream(self) -> list[StreamRow]:
        notes: dict[str, str] = {}
        others: dict[str, list[float]] = {}
        rows = [StreamRow(t) for t in self.s.targets]
        live = self.start_all("stream", True, notes)
        try:
            self.warm(live)
            self.log(f"stream: c={self.s.connections} rounds")
            c32 = self.rounds(live, "stream", lambda lv: self.wrk_run(
                lv.url, lv.script, self.s.connections, self.s.duration, lv.svc), notes, others)
            self.log("stream: time-to-first-byte rounds")
            ttfb = self.rounds(live, "stream", lambda lv: summarize_ttfb(self.loadgen(
                "ttfb", "--url", lv.url, "--model", lv.model, "--stream", "--key", lv.key,
                "--duration", str(self.s.duration))), notes, others)
        finally:
            for lv in live:
                if lv.svc:
                    lv.svc.stop()
        for row in rows:
            t = row.through
            row.note = notes.get(t, "")
            if c32.get(t):
                row.c32 = best_throughput([r for r, _ in c32[t]])
                row.rss_load_mb = max(p for _, p in c32[t]) if t != "direct" else None
            if ttfb.get(t):
                row.ttfb = min(ttfb[t], key=lambda x: x.ttfb_p50_ms if x.requests else math.inf)
            if others.get(t):
                row.other_pct = sum(others[t]) / len(others[t])
        return rows

    def run_failover(self) -> list[FailoverRow]:
        s = self.s
        slow_case = f"A slow first byte {s.slow_rate:.0%} (+{s.slow_ms:.0f} ms)"
        all_cases = {
            "fail": (f"A fails {s.fail_rate:.0%} ({s.fail_status})",
                     ["--fail-rate", str(s.fail_rate), "--fail-status", str(s.fail_status), "--seed", "1"]),
            "slow": (slow_case, ["--slow-rate", str(s.slow_rate), "--slow-ms", str(s.slow_ms), "--seed", "2"]),
            "reset": (f"A resets mid-body {s.fail_rate:.0%}", ["--reset-rate", str(s.fail_rate), "--seed", "4"]),
            "hang": (f"A hangs {s.fail_rate:.0%}", ["--hang-rate", str(s.fail_rate), "--seed", "5"]),
        }
        cases = [all_cases[c] for c in s.cases]
        rows = []
        targets = [t for t in s.targets if t != "passthrough"]
        for case, faults in cases:
            mock_a, url_a = self.start_fault_mock("mock-a", *faults)
            mock_b, url_b = self.start_fault_mock("mock-b", "--seed", "3")
            upstreams = {"mock-a": f"{url_a}/v1", "mock-b": f"{url_b}/v1"}
            runs: list[tuple[str, str, dict[str, Any] | None]] = []
            for target in targets:
                runs.append((target, "direct to A" if target == "direct" else target, None))
                if target == "fluxway" and case == slow_case and s.hedge_after_ms is not None:
                    hedge: dict[str, Any] = {"after_ms": s.hedge_after_ms} if s.hedge_after_ms > 0 else {}
                    label = f"fluxway, hedged after {s.hedge_after_ms:g} ms" if hedge else "fluxway, hedged at p95"
                    runs.append((target, label, {**s.model_extra, "hedge": hedge}))
            for target, through, extra in runs:
                rates = [s.rate]
                if target == "fluxway" and s.high_rate > 0:
                    rates.append(s.high_rate)
                self.log(f"failover: {case}: {through}")
                try:
                    svc, ep = self.start_target(target, upstreams, model_extra=extra, timeout_s=FAILOVER_FIRST_TOKEN_S)
                except RuntimeError as exc:
                    rows.append(FailoverRow(case, through, s.rate, note=_first_line(exc)))
                    self.log(f"failover: {through} skipped: {exc}")
                    continue
                try:
                    for rate in rates:
                        row = FailoverRow(case, through, rate)
                        rows.append(row)
                        mark = len(self.other_load)
                        row.result, row.upstream_calls = self.open_loop(ep, rate, (url_a, url_b))
                        row.other_pct = self.other_since(mark)
                except (RuntimeError, OSError, ValueError) as exc:
                    rows[-1].note = _first_line(exc)
                    self.log(f"failover: {through} failed: {exc}")
                finally:
                    if svc:
                        svc.stop()
            mock_a.stop()
            mock_b.stop()
        return rows


    def open_loop(self, ep: Endpoint, rate: float, mocks: Sequence[str]) -> tuple[OpenLoopResult, int]:
        """Open-loop runs at ``rate``; the best (success, then p99) with the upstream calls it caused."""
        s = self.s
        key = ep.headers.get("authorization", "").removeprefix("Bearer ")
        resets = [arg for url in mocks for arg in ("--reset", url + "/stats/reset")]
        best: tuple[OpenLoopResult, int] | None = None
        for _ in range(s.repeat):
            res = summarize_open(self.loadgen(
                "open", "--url", ep.json_url, "--model", ep.json_model, "--key", key, "--rate", str(rate),
                "--duration", str(s.failover_duration), "--warmup", str(min(s.warmup, s.failover_duration)),
                *resets))
            calls = sum(json.loads(http_request(u + "/stats")[1])["requests"] for u in mocks)
            if best is None or (res.success_pct, -res.p99_ms) > (best[0].success_pct, -best[0].p99_ms):
                best = (res, calls)
        assert best is not None
        return best


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Report


def load_line(other_load: Sequence[float]) -> str:
    """One line on how busy the machine was with other work while we measured."""
    if not other_load:
        return ""
    mean = sum(other_load) / len(other_load)
    return (f"- other work on the machine during the measured runs: {mean:.0f}% of all cores on average, "
            f"{max(other_load):.0f}% at most in one run (0% = the cores were ours alone)")


def report_header(title: str, settings: Settings, info: dict[str, Any], vers: dict[str, str], when: str) -> str:
    pin = "server under test on core 0; wrk, load generator and mock on core 1" if settings.pin else "no pinning"
    seconds = settings.failover_duration if title == TITLES["failover"] else settings.duration
    lines = [
        f"# {title}",
        "",
        f"- date: {when}",
        f"- machine: {info['nproc']} cores, {info['cpu']}, {info['mem_gb']} GB, Linux {info['kernel']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- method: {seconds} s per measured run after a {settings.warmup} s warm-up; each row "
        f"measured {settings.repeat}x and the better run kept (the 2 cores are shared with other work, so "
        f"figures are noisy: read the ratios); {pin}; one worker per server.",
    ]
    if settings.governance:
        lines.append("- Fluxway with governance on (master key + virtual key).")
    return "\n".join(lines)


def targets_note() -> str:
    return (
        "- direct: wrk straight to the nginx mock; passthrough: `bench/passthrough.py` (raw ASGI + aiohttp + orjson, "
        "no features); fluxway: `fluxway serve --workers 1`; litellm: `litellm --num_workers 1` from "
        "`bench/.venv-litellm`.\n"
        "- added = the row's c=1 figure minus direct's. RSS: the server's largest process (its worker), "
        "before load / peak during the c=32 runs. other work: share of the 2 cores used by processes not part "
        "of the benchmark during the row's measured runs (high = its figures are pessimistic)."
    )


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _find_bench_dir() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "bench" / "loadgen.py").exists():
            return base / "bench"
    return None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fluxway bench",
        description="Load-test Fluxway beside direct, a minimal Python pass-through and LiteLLM, against a local "
        "mock upstream (nginx; an aiohttp fault mock for failover). Prints markdown tables and writes them to "
        "bench/results/<date>-<scenario>.md (+ .json).",
        epilog="Examples: `fluxway bench` (json + stream, 10 s runs); `fluxway bench --smoke` (1 s, no files); "
        "`fluxway bench failover --targets fluxway,litellm`; `fluxway bench json --governance`.",
    )
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="json, stream, failover, or all (default: json stream)")
    ap.add_argument("--targets", default=",".join(ALL_TARGETS),
                    help="comma list of direct,passthrough,fluxway,litellm (litellm is skipped when not installed)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before measuring (default 3; 0: none)")
    ap.add_argument("--connections", "-c", type=int, default=32, help="connections of the throughput run (default 32)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per row, the better one kept (default 2)")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check that everything runs: 1 s runs, no warm-up, 1 repeat, nothing written")
    ap.add_argument("--governance", action="store_true", help="Fluxway with a master key and a virtual key")
    ap.add_argument("--passthrough-server", choices=("granian", "uvicorn"), default="uvicorn",
                    help="server of the minimal pass-through (default uvicorn+httptools: faster here)")
    ap.add_argument("--rate", type=float, default=10.0,
                    help="failover: open-loop requests per second for every target (default 10: below LiteLLM's "
                    "saturation on 2 shared cores, so its latency is not queueing)")
    ap.add_argument("--high-rate", type=float, default=100.0,
                    help="failover: a second rate measured for Fluxway only (default 100; 0: none)")
    ap.add_argument("--failover-duration", type=int, default=20,
                    help="failover: seconds of load per run (default 20)")
    ap.add_argument("--cases", default="fail,slow",
                    help="failover: comma list of fail (A answers --fail-status), slow (A's first byte is slow), "
                    "reset (A resets the connection mid-body), hang (A never answers; gateways time out after "
                    f"{FAILOVER_FIRST_TOKEN_S:g} s) (default fail,slow)")
    ap.add_argument("--fail-rate", type=float, default=0.5,
                    help="failover: fraction of requests target A fails, resets or hangs (default 0.5)")
    ap.add_argument("--fail-status", type=int, default=500, choices=(500, 502, 503, 429),
                    help="failover: status target A fails with (default 500)")
    ap.add_argument("--slow-rate", type=float, default=0.1, help="failover: fraction A's first byte is slow (0.1)")
    ap.add_argument("--slow-ms", type=float, default=1000.0, help="failover: delay of a slow first byte (1000 ms)")
    ap.add_argument("--upstream-delay-ms", type=float, default=0.0,
                    help="failover: fixed delay of every fault-mock answer (default 0)")
    ap.add_argument("--model-extra", default="{}",
                    help="failover/json: JSON merged into Fluxway's `bench` model config, e.g. a hedging setting")
    ap.add_argument("--hedge-after-ms", type=float, default=100.0,
                    help="failover: also run Fluxway with hedging after this delay in the slow case "
                    "(0: hedge at the observed p95; negative: no hedged row; default 100)")
    ap.add_argument("--wait-quiet", type=float, default=30.0,
                    help="before each measured run, wait up to this many seconds for other work on the machine "
                    "to drop below 25%% of the cores (default 30; 0: do not wait)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    ap.add_argument("--out", default=None, help="results directory (default bench/results)")
    ap.add_argument("--no-save", action="store_true", help="print only; write no results files")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of markdown")
    ap.add_argument("--bench-dir", default=None, help="the repository's bench/ directory (found automatically)")
    ap.add_argument("--litellm", default=None, help="litellm executable (default bench/.venv-litellm/bin/litellm)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary directory with the servers' logs")
    return ap


def settings_from_args(args: argparse.Namespace) -> Settings:
    scenarios = list(args.scenarios) or ["json", "stream"]
    if "all" in scenarios:
        scenarios = list(ALL_SCENARIOS)
    for sc in scenarios:
        if sc not in ALL_SCENARIOS:
            raise SystemExit(f"fluxway bench: unknown scenario {sc!r} (json, stream, failover, all)")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in ALL_TARGETS:
            raise SystemExit(f"fluxway bench: unknown target {t!r} ({', '.join(ALL_TARGETS)})")
    bench_dir = Path(args.bench_dir) if args.bench_dir else _find_bench_dir()
    if bench_dir is None:
        raise SystemExit("fluxway bench: cannot find the bench/ directory; run from the repository or pass --bench-dir")
    litellm = Path(args.litellm) if args.litellm else bench_dir / ".venv-litellm" / "bin" / "litellm"
    try:
        model_extra = json.loads(args.model_extra)
    except ValueError:
        raise SystemExit("fluxway bench: --model-extra must be a JSON object") from None
    if not isinstance(model_extra, dict):
        raise SystemExit("fluxway bench: --model-extra must be a JSON object")
    cases = tuple(dict.fromkeys(c.strip() for c in args.cases.split(",") if c.strip()))
    for c in cases:
        if c not in FAILOVER_CASES:
            raise SystemExit(f"fluxway bench: unknown failover case {c!r} ({', '.join(FAILOVER_CASES)})")
    smoke = bool(args.smoke)
    return Settings(
        scenarios=tuple(dict.fromkeys(scenarios)),
        targets=tuple(targets),
        duration=1 if smoke else max(1, args.duration),
        warmup=0 if smoke else max(0, args.warmup),
        connections=max(1, args.connections),
        repeat=1 if smoke else max(1, args.repeat),
        governance=bool(args.governance),
        pin=not args.no_pin and (os.cpu_count() or 1) >= 2,
        passthrough_server=args.passthrough_server,
        rate=args.rate,
        failover_duration=2 if smoke else max(1, args.failover_duration),
        fail_rate=args.fail_rate,
        fail_status=args.fail_status,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
        upstream_delay_ms=args.upstream_delay_ms,
        model_extra=model_extra,
        hedge_after_ms=None if args.hedge_after_ms < 0 else args.hedge_after_ms,
        high_rate=max(0.0, args.high_rate),
        wait_quiet=0.0 if smoke else max(0.0, args.wait_quiet),
        cases=cases,
        bench_dir=bench_dir.resolve(),
        litellm=litellm if litellm.exists() else None,
        out_dir=None if (smoke or args.no_save) else Path(args.out) if args.out else bench_dir / "results",
        print_json=bool(args.json),
        keep_logs=bool(args.keep_logs),
    )


TITLES = {
    "json": "Fluxway benchmark: JSON chat completions (throughput, latency, memory)",
    "stream": "Fluxway benchmark: streaming (5-chunk SSE)",
    "failover": "Fluxway benchmark: one of two targets failing (open loop)",
}


def render_scenario(name: str, rows: Sequence[Any], s: Settings) -> str:
    if name == "json":
        lines = ratio_lines(rows, "c32")
        table = render_json_table(rows, s.connections)
        return "\n".join([table, "", *lines, "", targets_note()])
    if name == "stream":
        lines = ratio_lines(rows, "c32")
        table = render_stream_table(rows, s.connections)
        note = ("- streams/s: complete 5-chunk streams per second (wrk). TTFB: time to the first body byte at c=1, "
                "measured with `bench/loadgen.py` (aiohttp client; its own overhead is in every row, so read the "
                "added column).")
        return "\n".join([table, "", *lines, "", note])
    table = render_failover_table(rows)
    note = (f"- Two upstreams (`bench/mock_upstream.py`): A injects the fault, B is healthy; open loop at the "
            f"given rate for {s.failover_duration} s after a {min(s.warmup, s.failover_duration)} s warm-up "
            "(`bench/loadgen.py`; latency counted from when each request was due, failures included). "
            "Counters are reset after the warm-up, so a breaker already open shows as 1.00 upstream calls / request. "
            "Fluxway: `weighted` over A and B, retry attempts 2, backoff 0"
            + (f", plus {json.dumps(s.model_extra)}" if s.model_extra else "")
            + "; LiteLLM: the same two deployments, simple-shuffle, num_retries 2. Both give up on a silent "
            f"upstream after {FAILOVER_FIRST_TOKEN_S:g} s (Fluxway connect/first_token timeout, LiteLLM timeout). "
            "Upstream calls / request = requests the mocks saw divided by requests sent.")
    return "\n".join([table, "", note])


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    s = settings_from_args(args)
    if "litellm" in s.targets and s.litellm is None:
        print("[bench] litellm not installed (bench/install_litellm.sh); skipping it", file=sys.stderr)
        s.targets = tuple(t for t in s.targets if t != "litellm")
    now = _dt.datetime.now(_dt.UTC)
    info = machine_info()
    vers = versions(s.litellm.parent / "python" if s.litellm else None, s.bench_dir.parent)
    results: dict[str, Any] = {"date": now.isoformat(timespec="seconds"), "machine": info, "versions": vers,
                               "settings": _jsonable(s), "scenarios": {}}
    outputs: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="fluxway-bench-"))
    previous = signal.signal(signal.SIGTERM, _terminate)  # so SIGTERM still stops every server we started
    try:
        with ExitStack() as stack:
            h = Harness(s, workdir, stack)
            needs_nginx = any(sc in s.scenarios for sc in ("json", "stream"))
            if needs_nginx:
                h.start_nginx()
            for sc in s.scenarios:
                rows: Sequence[Any]
                if sc == "json":
                    rows = h.run_json()
                elif sc == "stream":
                    rows = h.run_stream()
                else:
                    rows = h.run_failover()
                suffix = "-governance" if s.governance else ""
                header = report_header(TITLES[sc], s, info, vers, results["date"])
                if h.other_load:
                    header += "\n" + load_line(h.other_load)
                    results.setdefault("other_load_pct", {})[sc] = [round(x, 1) for x in h.other_load]
                h.other_load = []
                md = "\n\n".join([
                    header,
                    render_scenario(sc, rows, s),
                    *(["Notes:\n" + "\n".join(f"- {n}" for n in dict.fromkeys(h.notes))] if h.notes else []),
                ]) + "\n"
                outputs.append(md)
                results["scenarios"][sc] = _jsonable(list(rows))
                if not s.print_json:
                    print(md, flush=True)
                if s.out_dir is not None:
                    s.out_dir.mkdir(parents=True, exist_ok=True)
                    stem = s.out_dir / f"{now:%Y-%m-%d}-{sc}{suffix}"
                    svg = scenario_svg(sc, rows, s.connections)
                    if svg is not None:
                        stem.with_suffix(".svg").write_text(svg)
                        md += f"\n![{sc} plot]({stem.name}.svg)\n"
                    stem.with_suffix(".md").write_text(md)
                    one = {**results, "scenarios": {sc: results["scenarios"][sc]}}
                    stem.with_suffix(".json").write_text(json.dumps(one, indent=2) + "\n")
                    print(f"[bench] wrote {stem}.md, .json" + (" and .svg" if svg else ""), file=sys.stderr)
    except RuntimeError as exc:
        print(f"fluxway bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if s.keep_logs:
            print(f"[bench] logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if s.print_json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
