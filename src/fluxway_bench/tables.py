"""The markdown tables of each scenario and the ratio lines under them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fluxway_bench.stats import OpenLoopResult, TtfbResult, WrkResult


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
    """ "fluxway / passthrough" and "fluxway / litellm" for a req/s metric of the rows."""
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
        "through",
        f"c={c} req/s",
        f"c={c} p50",
        f"c={c} p99",
        "c=1 p50",
        "added c=1 p50",
        "c=1 p99",
        "added c=1 p99",
        "errors",
        "RSS idle / loaded",
        "other work",
    ]
    body = []
    for r in rows:
        if r.c32 is None and r.c1 is None:
            body.append([r.through, *(["-"] * 8), r.note or "-", "-", "-"])
            continue
        added50 = fmt_added(r.c1.p50_ms, d50) if r.c1 and r.through != "direct" else "-"
        added99 = fmt_added(r.c1.p99_ms, d99) if r.c1 and r.through != "direct" else "-"
        body.append(
            [
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
            ]
        )
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
        "through",
        f"c={c} streams/s",
        f"c={c} p50 (whole stream)",
        "c=1 TTFB p50",
        "added TTFB p50",
        "c=1 TTFB p99",
        "errors",
        "RSS loaded",
        "other work",
    ]
    body = []
    for r in rows:
        if r.c32 is None and r.ttfb is None:
            body.append([r.through, *(["-"] * 6), r.note or "-", "-"])
            continue
        errors = _errors(r.c32)
        if r.ttfb and r.ttfb.bad:
            errors = f"{errors}; {r.ttfb.bad} bad TTFB answers"
        body.append(
            [
                r.through,
                fmt_int(r.c32.rps if r.c32 else None),
                fmt_ms(r.c32.p50_ms if r.c32 else None),
                fmt_ms(r.ttfb.ttfb_p50_ms if r.ttfb else None),
                fmt_added(r.ttfb.ttfb_p50_ms, d_ttfb) if r.ttfb and r.through != "direct" else "-",
                fmt_ms(r.ttfb.ttfb_p99_ms if r.ttfb else None),
                errors,
                f"{r.rss_load_mb:.0f} MB" if r.rss_load_mb is not None else "-",
                fmt_pct(r.other_pct),
            ]
        )
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
    header = [
        "case",
        "through",
        "rate",
        "requests",
        "success",
        "p50",
        "p90",
        "p99",
        "max",
        "statuses",
        "upstream calls / request",
        "other work",
    ]
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
        body.append(
            [
                r.case,
                r.through,
                f"{r.rate:g}/s",
                fmt_int(res.sent),
                f"{res.success_pct:.1f}%",
                fmt_ms(res.p50_ms),
                fmt_ms(res.p90_ms),
                fmt_ms(res.p99_ms),
                fmt_ms(res.max_ms),
                statuses,
                calls,
                fmt_pct(r.other_pct),
            ]
        )
    return _table(header, body)
