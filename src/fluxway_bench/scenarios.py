"""The scenarios: json and stream (closed loop, interleaved rounds), failover (open loop)."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fluxway_bench.fixtures import chat_request
from fluxway_bench.harness import Harness, first_line
from fluxway_bench.load import check, loadgen, open_loop, write_script, wrk_run
from fluxway_bench.processes import Service
from fluxway_bench.settings import FAILOVER_FIRST_TOKEN_S
from fluxway_bench.stats import best_latency, best_throughput, summarize_ttfb
from fluxway_bench.tables import FailoverRow, JsonRow, StreamRow
from fluxway_bench.targets import start_fault_mock, start_target

T = TypeVar("T")


@dataclass
class Live:
    """A started target, ready for load: where to send it and the wrk script that does."""

    target: str
    svc: Service | None
    url: str
    model: str
    key: str
    script: Path


def start_all(h: Harness, scenario: str, stream: bool, notes: dict[str, str]) -> list[Live]:
    """Start every target at once (idle ones cost nothing) so their runs can be interleaved."""
    live = []
    for target in h.s.targets:
        h.log(f"{scenario}: starting {target}")
        try:
            svc, ep = start_target(h, target, h.nginx_upstreams())
        except RuntimeError as exc:
            notes[target] = first_line(exc)
            h.log(f"{scenario}: {target} skipped: {exc}")
            continue
        model, url = (ep.stream_model, ep.stream_url) if stream else (ep.json_model, ep.json_url)
        body = chat_request(model, stream)
        try:
            check(h, target, url, body, ep.headers, stream)
        except (RuntimeError, OSError) as exc:
            notes[target] = first_line(exc)
            h.log(f"{scenario}: {target} skipped: {exc}")
            if svc:
                svc.stop()
            continue
        key = ep.headers.get("authorization", "").removeprefix("Bearer ")
        live.append(Live(target, svc, url, model, key, write_script(h, f"{scenario}-{target}", body, ep.headers)))
    return live


def rounds(
    h: Harness,
    live: Sequence[Live],
    scenario: str,
    run: Callable[[Live], T],
    notes: dict[str, str],
    others: dict[str, list[float]],
) -> dict[str, list[T]]:
    """``--repeat`` rounds of ``run`` over every live target in turn (so noise hits them alike)."""
    out: dict[str, list[T]] = {lv.target: [] for lv in live}
    for _ in range(h.s.repeat):
        for lv in live:
            if lv.target in notes:
                continue
            mark = len(h.other_load)
            try:
                out[lv.target].append(run(lv))
            except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
                notes[lv.target] = first_line(exc)
                h.log(f"{scenario}: {lv.target} failed: {exc}")
            finally:
                others.setdefault(lv.target, []).extend(h.other_load[mark:])
    return out


def warm(h: Harness, live: Sequence[Live]) -> None:
    if not h.s.warmup:
        return
    for lv in live:
        with suppress(RuntimeError):
            wrk_run(h, lv.url, lv.script, h.s.connections, h.s.warmup, None, measured=False)


def run_json(h: Harness) -> list[JsonRow]:
    notes: dict[str, str] = {}
    others: dict[str, list[float]] = {}
    rows = [JsonRow(t) for t in h.s.targets]
    live = start_all(h, "json", False, notes)
    try:
        idle = {lv.target: lv.svc.rss_mb() if lv.svc else None for lv in live}
        warm(h, live)
        h.log(f"json: c={h.s.connections} rounds")
        c32 = rounds(
            h,
            live,
            "json",
            lambda lv: wrk_run(h, lv.url, lv.script, h.s.connections, h.s.duration, lv.svc),
            notes,
            others,
        )
        h.log("json: c=1 rounds")
        c1 = rounds(h, live, "json", lambda lv: wrk_run(h, lv.url, lv.script, 1, h.s.duration, None)[0], notes, others)
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


def run_stream(h: Harness) -> list[StreamRow]:
    notes: dict[str, str] = {}
    others: dict[str, list[float]] = {}
    rows = [StreamRow(t) for t in h.s.targets]
    live = start_all(h, "stream", True, notes)
    try:
        warm(h, live)
        h.log(f"stream: c={h.s.connections} rounds")
        c32 = rounds(
            h,
            live,
            "stream",
            lambda lv: wrk_run(h, lv.url, lv.script, h.s.connections, h.s.duration, lv.svc),
            notes,
            others,
        )
        h.log("stream: time-to-first-byte rounds")
        ttfb = rounds(
            h,
            live,
            "stream",
            lambda lv: summarize_ttfb(
                loadgen(
                    h,
                    "ttfb",
                    "--url",
                    lv.url,
                    "--model",
                    lv.model,
                    "--stream",
                    "--key",
                    lv.key,
                    "--duration",
                    str(h.s.duration),
                )
            ),
            notes,
            others,
        )
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


def run_failover(h: Harness) -> list[FailoverRow]:
    s = h.s
    slow_case = f"A slow first byte {s.slow_rate:.0%} (+{s.slow_ms:.0f} ms)"
    all_cases = {
        "fail": (
            f"A fails {s.fail_rate:.0%} ({s.fail_status})",
            ["--fail-rate", str(s.fail_rate), "--fail-status", str(s.fail_status), "--seed", "1"],
        ),
        "slow": (slow_case, ["--slow-rate", str(s.slow_rate), "--slow-ms", str(s.slow_ms), "--seed", "2"]),
        "reset": (f"A resets mid-body {s.fail_rate:.0%}", ["--reset-rate", str(s.fail_rate), "--seed", "4"]),
        "hang": (f"A hangs {s.fail_rate:.0%}", ["--hang-rate", str(s.fail_rate), "--seed", "5"]),
    }
    cases = [all_cases[c] for c in s.cases]
    rows = []
    targets = [t for t in s.targets if t != "passthrough"]
    for case, faults in cases:
        mock_a, url_a = start_fault_mock(h, "mock-a", *faults)
        mock_b, url_b = start_fault_mock(h, "mock-b", "--seed", "3")
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
            h.log(f"failover: {case}: {through}")
            try:
                svc, ep = start_target(h, target, upstreams, model_extra=extra, timeout_s=FAILOVER_FIRST_TOKEN_S)
            except RuntimeError as exc:
                rows.append(FailoverRow(case, through, s.rate, note=first_line(exc)))
                h.log(f"failover: {through} skipped: {exc}")
                continue
            try:
                for rate in rates:
                    row = FailoverRow(case, through, rate)
                    rows.append(row)
                    mark = len(h.other_load)
                    row.result, row.upstream_calls = open_loop(h, ep, rate, (url_a, url_b))
                    row.other_pct = h.other_since(mark)
            except (RuntimeError, OSError, ValueError) as exc:
                rows[-1].note = first_line(exc)
                h.log(f"failover: {through} failed: {exc}")
            finally:
                if svc:
                    svc.stop()
        mock_a.stop()
        mock_b.stop()
    return rows
