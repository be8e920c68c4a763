"""The SVG bar plots committed beside the json and stream tables (no plotting library)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fluxway_bench.tables import fmt_int

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
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}" '
        'font-family="sans-serif">'
    )
    return "\n".join([head, f'<rect width="{width}" height="{y}" fill="white"/>', *parts, "</svg>"]) + "\n"


def scenario_svg(name: str, rows: Sequence[Any], connections: int) -> str | None:
    """The plot committed beside a scenario's table (json and stream; None for others)."""
    if name == "json":
        direct = next((r.c1.p50_ms for r in rows if r.through == "direct" and r.c1), None)
        rps = [(r.through, r.c32.rps) for r in rows if r.c32]
        added = [
            (r.through, r.c1.p50_ms - direct) for r in rows if r.c1 and direct is not None and r.through != "direct"
        ]
        return svg_bars(
            "JSON chat completions, one worker",
            [
                (f"c={connections} requests/s (log scale)", rps, True),
                ("added latency at c=1, p50 (ms)", added, False),
            ],
        )
    if name == "stream":
        direct = next((r.ttfb.ttfb_p50_ms for r in rows if r.through == "direct" and r.ttfb), None)
        sps = [(r.through, r.c32.rps) for r in rows if r.c32]
        added = [
            (r.through, r.ttfb.ttfb_p50_ms - direct)
            for r in rows
            if r.ttfb and direct is not None and r.through != "direct"
        ]
        return svg_bars(
            "Streaming (5-chunk SSE), one worker",
            [
                (f"c={connections} streams/s (log scale)", sps, True),
                ("added time to first byte at c=1, p50 (ms)", added, False),
            ],
        )
    return None
