"""A small asyncio load generator for what wrk cannot measure (wrk2 and oha are not available here).

Two modes, each printing one JSON object of raw samples on stdout (``fluxway bench`` summarises them):

* ``ttfb``: one connection, requests back to back for ``--duration`` seconds; records the time to the
  first body byte (the first SSE event of a stream) and to the end of the body, in milliseconds.
* ``open``: open loop at a fixed ``--rate`` for ``--duration`` seconds. Request *i* is due at
  ``t0 + i/rate`` whatever happened before, and its latency counts from when it was due, so a stall
  shows up in the figures instead of silently slowing the sender (no coordinated omission).

    python bench/loadgen.py open --url http://127.0.0.1:8400/v1/chat/completions --rate 50 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson


def _request_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def _ok(status: int, data: bytes, stream: bool) -> bool:
    if status != 200:
        return False
    if stream:
        return b"[DONE]" in data and b'"error"' not in data
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and bool(parsed.get("choices"))


async def run_ttfb(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                   duration: float, stream: bool) -> dict[str, Any]:
    ttfb: list[float] = []
    total: list[float] = []
    statuses: Counter[str] = Counter()
    bad = 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as resp:
            first = await resp.content.readany()
            t1 = time.perf_counter()
            rest = await resp.read()
            t2 = time.perf_counter()
        statuses[str(resp.status)] += 1
        if not _ok(resp.status, first + rest, stream):
            bad += 1
            continue
        ttfb.append((t1 - t0) * 1000)
        total.append((t2 - t0) * 1000)
    return {"mode": "ttfb", "ttfb_ms": ttfb, "total_ms": total, "statuses": dict(statuses), "bad": bad}


async def run_open(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                   duration: float, rate: float, stream: bool, timeout: float) -> dict[str, Any]:
    n = max(1, int(rate * duration))
    latencies_ok: list[float] = []
    latencies_all: list[float] = []
    statuses: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    ok = 0
    t_req = aiohttp.ClientTimeout(total=timeout)

    async def one(due: float) -> None:
        nonlocal ok
        try:
            async with session.post(url, data=body, headers=headers, timeout=t_req) as resp:
                data = await resp.read()
                status = resp.status
                att = resp.headers.get("x-fluxway-attempts")
        except (TimeoutError, aiohttp.ClientError) as exc:
            errors[type(exc).__name__] += 1
            latencies_all.append((time.perf_counter() - due) * 1000)
            return
        ms = (time.perf_counter() - due) * 1000
        statuses[str(status)] += 1
        if att:
            attempts[att] += 1
        latencies_all.append(ms)
        if _ok(status, data, stream):
            ok += 1
            latencies_ok.append(ms)

    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter() + 0.05
    late = 0.0
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return {
        "mode": "open", "sent": n, "ok": ok, "rate": rate, "duration_s": duration,
        "latency_ok_ms": latencies_ok, "latency_all_ms": latencies_all, "statuses": dict(statuses),
        "attempts": dict(attempts), "errors": dict(errors), "max_send_lag_ms": late * 1000,
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if args.key:
        headers["authorization"] = f"Bearer {args.key}"
    body = _request_body(args.model, args.stream)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        # One untimed request opens the connection (a faulty upstream may break it: that is fine).
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.post(args.url, data=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=args.timeout)) as resp:
                await resp.read()
        if args.warmup > 0:
            if args.mode == "ttfb":
                await run_ttfb(session, args.url, body, headers, args.warmup, args.stream)
            else:
                await run_open(session, args.url, body, headers, args.warmup, args.rate, args.stream, args.timeout)
        for url in args.reset:
            async with session.post(url) as resp:
                await resp.read()
        if args.mode == "ttfb":
            return await run_ttfb(session, args.url, body, headers, args.duration, args.stream)
        return await run_open(session, args.url, body, headers, args.duration, args.rate, args.stream, args.timeout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("ttfb", "open"))
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", default="bench")
    ap.add_argument("--key", default="")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=50.0, help="open mode: requests per second")
    ap.add_argument("--timeout", type=float, default=30.0, help="open mode: per-request timeout (s)")
    ap.add_argument("--warmup", type=float, default=0.0, help="seconds of the same load before measuring")
    ap.add_argument("--reset", action="append", default=[], help="URL to POST to after the warm-up (mock stats)")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(amain(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
