"""Benchmark: does serving slow down while ``/admin/usage`` queries run on a big store?

    python bench/serving_under_queries.py [--records N] [--db sqlite|postgresql] [--duration S]

The store is filled like ``bench/usage_rollups.py`` (N usage records over 30 days with their
rollups; reused when it already holds N). Then ``fluxway serve`` (one worker, pinned to core 0)
serves chat completions from the nginx mock (``fluxway bench``'s) under ``wrk`` (c=32, core 1):
once alone, once while a client sends every ``/admin/usage`` grouping over three ranges, one query
after another, for the whole run. Reported: req/s, p50 and p99 of both runs, and the query times
under load. Results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from fluxway.store import Store
from fluxway.store.usage_report import GROUPS
from fluxway_bench.configs import UPSTREAM_KEY, UPSTREAM_MODEL, nginx_conf, wrk_script
from fluxway_bench.fixtures import chat_request
from fluxway_bench.processes import Service, free_port, wait_ready
from fluxway_bench.stats import parse_wrk

HERE = Path(__file__).resolve().parent
MASTER = "sk-bench"


def _rollups_bench() -> Any:
    spec = importlib.util.spec_from_file_location("usage_rollups_bench", HERE / "usage_rollups.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def prepare(url: str, n: int) -> None:
    import sqlalchemy as sa

    ub = _rollups_bench()
    store = Store.open(url)
    await store.upgrade()
    async with store.engine.connect() as conn:
        have = (await conn.execute(sa.text("SELECT count(*) FROM usage_records"))).scalar_one()
    # What a previous run served is in the store too (a few ten thousand records of today): kept.
    if not n <= have <= n * 1.2:
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM usage_records"))
            await conn.execute(sa.text("DELETE FROM usage_rollups"))
        print(f"filling the store with {n:,} records ...", flush=True)
        await ub.fill(store, n)
    await store.close()


def probe_loop(base: str, stop: threading.Event, out: list[float]) -> None:
    """The control: how long any request to this busy server takes (``GET /health``, no store)."""
    while not stop.is_set():
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=30) as r:
                r.read()
        except urllib.error.HTTPError as err:  # 503 "degraded" is an answer too
            err.read()
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.2)


def query_loop(base: str, stop: threading.Event, out: list[float], labels: list[str]) -> None:
    now = _rollups_bench().NOW
    ranges = [{}, {"since": now - 7 * 86400 - 1234.5, "until": now - 17.25},
              {"since": now - 86400 - 77.5, "until": now - 3.5}]
    headers = {"authorization": f"Bearer {MASTER}"}
    while not stop.is_set():
        for group in GROUPS:
            for params in ranges:
                if stop.is_set():
                    return
                query = urllib.parse.urlencode({"group_by": group, **params})
                req = urllib.request.Request(f"{base}/admin/usage?{query}", headers=headers)
                t = time.perf_counter()
                with urllib.request.urlopen(req, timeout=30) as r:  # raises on a non-2xx answer
                    r.read()
                out.append((time.perf_counter() - t) * 1000)
                labels.append(f"{group} {['all', '7d', '1d'][ranges.index(params)]}")


def run_wrk(wrk: str, url: str, script: Path, duration: int) -> dict[str, float]:
    cmd = ["taskset", "-c", "1", wrk, "-t1", "-c32", f"-d{duration}s", "--timeout", "10s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    r = parse_wrk(out)
    return {"rps": round(r.rps), "p50_ms": round(r.p50_ms, 2), "p99_ms": round(r.p99_ms, 2),
            "errors": r.socket_errors + r.non2xx}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--sqlite-path", default=str(Path(tempfile.gettempdir()) / "fluxway-bench-usage.db"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    if args.db == "postgresql":
        url = os.environ.get("FLUXWAY_TEST_POSTGRES_URL")
        if not url:
            raise SystemExit("set FLUXWAY_TEST_POSTGRES_URL for --db postgresql")
    else:
        url = f"sqlite:///{args.sqlite_path}"
    wrk, nginx = shutil.which("wrk"), shutil.which("nginx")
    if not wrk or not nginx:
        raise SystemExit("needs wrk and nginx (apt-get install wrk nginx-light)")
    asyncio.run(prepare(url, args.records))
    work = Path(tempfile.mkdtemp(prefix="fluxway-bench-queries-"))
    services: list[Service] = []
    try:
        mock_port, port = free_port(), free_port()
        (work / "nginx.conf").write_text(nginx_conf(mock_port, work))
        services.append(Service("nginx", [nginx, "-c", str(work / "nginx.conf"), "-p", str(work)],
                                work / "nginx.log", core=1).start())
        wait_ready(services[-1], f"http://127.0.0.1:{mock_port}/v1/models", 15)
        cfg = {
            "server": {"host": "127.0.0.1", "port": port, "workers": 1},
            "auth": {"master_key": MASTER},
            "store": {"url": url},
            "usage": {"spool_dir": str(work / "spool")},
            "providers": [{"name": "up", "type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                           "api_keys": [UPSTREAM_KEY]}],
            "models": [{"name": "bench", "targets": [{"provider": "up", "model": UPSTREAM_MODEL}]}],
        }
        (work / "fluxway.yaml").write_text(yaml.safe_dump(cfg))
        services.append(Service("fluxway", ["fluxway", "serve", "--config", str(work / "fluxway.yaml")],
                                work / "fluxway.log", core=0).start())
        base = f"http://127.0.0.1:{port}"
        wait_ready(services[-1], base + "/health", 60)
        script = work / "chat.lua"
        script.write_text(wrk_script(chat_request("bench"), {"authorization": f"Bearer {MASTER}"}))
        url_chat = base + "/v1/chat/completions"
        run_wrk(wrk, url_chat, script, 3)  # warm-up
        alone = run_wrk(wrk, url_chat, script, args.duration)
        stop, times, labels = threading.Event(), list[float](), list[str]()
        querier = threading.Thread(target=query_loop, args=(base, stop, times, labels), daemon=True)
        querier.start()
        health: list[float] = []
        prober = threading.Thread(target=probe_loop, args=(base, stop, health), daemon=True)
        prober.start()
        time.sleep(0.5)
        loaded = run_wrk(wrk, url_chat, script, args.duration)
        stop.set()
        querier.join(timeout=60)
        prober.join(timeout=60)
    finally:
        for svc in reversed(services):
            svc.stop()
    slowest = sorted(zip(times, labels, strict=True), reverse=True)[:5]
    result = {
        "db": args.db, "records": args.records, "alone": alone, "with_queries": loaded,
        "queries": {"count": len(times), "median_ms": round(statistics.median(times), 1) if times else None,
                    "max_ms": round(max(times), 1) if times else None,
                    "slowest": [f"{lab}: {ms:.1f} ms" for ms, lab in slowest]},
        "health_control": {"count": len(health), "median_ms": round(statistics.median(health), 1) if health else None,
                           "max_ms": round(max(health), 1) if health else None},
    }
    print(json.dumps(result, indent=2))
    if not args.no_save:
        out = HERE / "results" / f"{time.strftime('%Y-%m-%d')}-serving-under-queries-{args.db}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {out}")


if __name__ == "__main__":
    main()
