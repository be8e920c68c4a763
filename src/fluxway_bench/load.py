"""Load generators: wrk (closed loop), ``bench/loadgen.py`` (open loop, time to first byte)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluxway_bench.configs import wrk_script
from fluxway_bench.harness import LOAD_CORE, Endpoint, Harness
from fluxway_bench.processes import Service, http_request, pinned
from fluxway_bench.stats import OpenLoopResult, WrkResult, parse_wrk, summarize_open


def check(h: Harness, name: str, url: str, body: dict[str, Any], headers: dict[str, str], stream: bool) -> None:
    """One request before measuring: a target answering errors fast must not look fast."""
    status, data = http_request(url, json.dumps(body).encode(), {"content-type": "application/json", **headers})
    ok = status == 200 and ((b"[DONE]" in data) if stream else (b'"choices"' in data))
    if not ok:
        raise RuntimeError(f"{name}: sanity request answered {status}: {data[:300]!r}")


def wrk_run(
    h: Harness, url: str, script: Path, connections: int, duration: int, svc: Service | None, measured: bool = True
) -> tuple[WrkResult, float]:
    cmd = pinned(
        [h.wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), url],
        h.core(LOAD_CORE),
    )
    if measured:
        h.wait_quiet()
    meter = h.meter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0.0
    while proc.poll() is None:
        if svc is not None:
            peak = max(peak, svc.rss_mb())
        time.sleep(0.25)
    if measured:
        h.other_load.append(meter.others_pct())
    out = proc.stdout.read() if proc.stdout else ""
    try:
        return parse_wrk(out), peak
    except ValueError:
        last = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "no output")
        raise RuntimeError(f"wrk failed: {last.strip()}\n{out[-2000:]}") from None


def loadgen(h: Harness, *args: str) -> dict[str, Any]:
    cmd = pinned([sys.executable, str(h.s.bench_dir / "loadgen.py"), *args], h.core(LOAD_CORE))
    h.wait_quiet()
    meter = h.meter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    h.other_load.append(meter.others_pct())
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def write_script(h: Harness, name: str, body: dict[str, Any], headers: dict[str, str]) -> Path:
    path = h.work / f"{name}.lua"
    path.write_text(wrk_script(body, headers))
    return path


# -- scenarios --------------------------------------------------------------------------------


def open_loop(h: Harness, ep: Endpoint, rate: float, mocks: Sequence[str]) -> tuple[OpenLoopResult, int]:
    """Open-loop runs at ``rate``; the best (success, then p99) with the upstream calls it caused."""
    s = h.s
    key = ep.headers.get("authorization", "").removeprefix("Bearer ")
    resets = [arg for url in mocks for arg in ("--reset", url + "/stats/reset")]
    best: tuple[OpenLoopResult, int] | None = None
    for _ in range(s.repeat):
        res = summarize_open(
            loadgen(
                h,
                "open",
                "--url",
                ep.json_url,
                "--model",
                ep.json_model,
                "--key",
                key,
                "--rate",
                str(rate),
                "--duration",
                str(s.failover_duration),
                "--warmup",
                str(min(s.warmup, s.failover_duration)),
                *resets,
            )
        )
        calls = sum(json.loads(http_request(u + "/stats")[1])["requests"] for u in mocks)
        if best is None or (res.success_pct, -res.p99_ms) > (best[0].success_pct, -best[0].p99_ms):
            best = (res, calls)
    assert best is not None
    return best
