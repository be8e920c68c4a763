"""Benchmark: event throughput per sink, through the outbox on SQLite.

    python bench/events.py [--events N] [--sinks webhook,redis_stream,nats]

For each sink alone: N ``usage``-sized events are emitted at once (the producer's cost: emit() per
event), stored by the writer and delivered by the sink's dispatcher; reported are the emit cost, the
events/s from the first emit until the last one is delivered, and the store-only rate (the writer
alone). The webhook goes to a local aiohttp receiver (checks the signature, answers 204), Redis
Streams to ``FLUXWAY_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/0), NATS to a nats-server
started on a free port. Results go to ``bench/results/events.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from fluxway.config import parse
from fluxway.events.outbox import Outbox
from fluxway.observability.metrics import RequestStats
from fluxway.store import Store

SECRET = "bench"
DATA = {"id": "0123456789abcdef1", "request_id": "req-1", "key": "key_0123456789abcdef", "team": "search",
        "model": "smart", "provider": "openai", "upstream_model": "gpt-4o-mini", "endpoint": "chat",
        "status": 200, "stream": False, "prompt_tokens": 812, "completion_tokens": 164, "cached_tokens": 0,
        "cost_usd": 0.00022, "latency_ms": 812.5, "ttft_ms": None, "tags": "a,b", "created_at": 1.7e9}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _receiver() -> tuple[web.AppRunner, str, list[int]]:
    seen = [0]

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert request.headers["x-fluxway-signature"] == want
        seen[0] += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook", seen


async def run_sink(kind: str, n: int, tmp: Path, redis_url: str, nats_url: str | None, hook_url: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": kind, "type": kind, "batch_size": 500}
    if kind == "webhook":
        entry.update(url=hook_url, secret=SECRET)
    elif kind == "redis_stream":
        entry.update(stream=f"fluxway.bench.{os.getpid()}", maxlen=n)
    else:
        entry.update(url=nats_url, subject="fluxway.bench")
    cfg = parse({"redis": {"url": redis_url}, "events": [entry]}, {})
    store = Store.open(f"sqlite:///{tmp}/{kind}.db")
    await store.upgrade()
    box = Outbox(store.outbox, cfg.events, RequestStats(), redis_url=redis_url)
    await box.start()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            box.emit("usage", DATA)
        emit_s = time.perf_counter() - t0
        while box.stats.sink_delivered[kind] < n:
            await asyncio.sleep(0.005)
        total_s = time.perf_counter() - t0
    finally:
        await box.close()
        await store.close()
        if kind == "redis_stream":
            from fluxway.redis_client import create_redis

            client = create_redis(redis_url)
            await client.delete(entry["stream"])
            await client.aclose()
    return {"sink": kind, "events": n, "emit_us_per_event": round(emit_s / n * 1e6, 3),
            "events_per_s": round(n / total_s), "seconds": round(total_s, 3)}


async def store_only(n: int, tmp: Path) -> dict[str, Any]:
    cfg = parse({"events": [{"name": "x", "type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s"}]}, {})
    store = Store.open(f"sqlite:///{tmp}/store.db")
    await store.upgrade()
    box = Outbox(store.outbox, cfg.events, RequestStats())
    for _ in range(n):
        box.emit("usage", DATA)
    t0 = time.perf_counter()
    await box.flush()
    s = time.perf_counter() - t0
    await store.close()
    return {"sink": "(outbox write only)", "events": n, "events_per_s": round(n / s), "seconds": round(s, 3)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--sinks", default="webhook,redis_stream,nats")
    args = ap.parse_args()
    redis_url = os.environ.get("FLUXWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    kinds = args.sinks.split(",")
    nats_proc = None
    nats_url = None
    if "nats" in kinds:
        binary = shutil.which("nats-server")
        if binary is None:
            raise SystemExit("nats-server is not installed (apt-get install nats-server)")
        port = _free_port()
        nats_proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nats_url = f"nats://127.0.0.1:{port}"
        time.sleep(0.5)
    runner, hook_url, _ = await _receiver()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="fluxway-bench-events-") as tmp:
            results.append(await store_only(args.events, Path(tmp)))
            for kind in kinds:
                results.append(await run_sink(kind, args.events, Path(tmp), redis_url, nats_url, hook_url))
    finally:
        await runner.cleanup()
        if nats_proc is not None:
            nats_proc.terminate()
            nats_proc.wait()
    for r in results:
        print(json.dumps(r))
    out = Path(__file__).parent / "results" / "events.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
