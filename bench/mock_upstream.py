"""A fault-injecting OpenAI-shaped mock upstream for the benchmark's resilience scenarios.

nginx serves the zero-latency rows (it is far faster than any Python server); this aiohttp server
is for what nginx cannot do: a fixed delay, failing a given fraction of requests with 500/503/429
(429 with ``retry-after``), and a slow first byte a given fraction of the time.

    python bench/mock_upstream.py --port 9101 --fail-rate 0.5 --fail-status 500
    python bench/mock_upstream.py --port 9102 --slow-rate 0.1 --slow-ms 1000

``POST /v1/chat/completions`` answers a ``chat.completion`` (or, when the body has ``"stream": true``,
an SSE stream of 5 chunks + ``[DONE]``). ``--reset-rate`` sends half an answer then resets the
connection; ``--hang-rate`` never answers. ``GET /stats`` returns the counters as JSON;
``POST /stats/reset`` zeroes them. Decisions come from a seeded RNG so runs are repeatable.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from dataclasses import asdict, dataclass

import orjson
from aiohttp import web

from fluxway_bench.fixtures import chat_completion_body, sse_frames


@dataclass
class Stats:
    requests: int = 0
    failed: int = 0
    slowed: int = 0
    streams: int = 0
    resets: int = 0
    hangs: int = 0


@dataclass(frozen=True)
class Faults:
    delay_s: float
    fail_rate: float
    fail_status: int
    slow_rate: float
    slow_s: float
    reset_rate: float = 0.0
    hang_rate: float = 0.0


def _error_body(status: int) -> bytes:
    kind = {429: "rate_limit_exceeded", 503: "overloaded"}.get(status, "server_error")
    return orjson.dumps({"error": {"message": f"mock upstream injected {status}", "type": kind, "code": kind}})


async def _reset_mid_body(request: web.Request, body: bytes, stream: bool) -> web.StreamResponse:
    """Send the headers and half the body, then drop the connection."""
    ctype = "text/event-stream" if stream else "application/json"
    resp = web.StreamResponse(headers={"content-type": ctype})
    if not stream:
        resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    return resp


def make_app(faults: Faults, seed: int = 1) -> web.Application:
    rng = random.Random(seed)
    stats = Stats()
    json_body = chat_completion_body()
    frames = sse_frames()

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        stats.requests += 1
        try:
            stream = bool(orjson.loads(raw).get("stream")) if raw else False
        except (orjson.JSONDecodeError, AttributeError):
            return web.json_response({"error": {"message": "bad json", "type": "invalid_request_error"}}, status=400)
        if rng.random() < faults.fail_rate:
            stats.failed += 1
            headers = {"retry-after": "1"} if faults.fail_status == 429 else {}
            return web.Response(
                status=faults.fail_status, body=_error_body(faults.fail_status),
                content_type="application/json", headers=headers,
            )
        roll = rng.random()
        if roll < faults.hang_rate:
            stats.hangs += 1
            await asyncio.sleep(3600)  # the client's timeout (or its disconnect) ends this
        elif roll < faults.hang_rate + faults.reset_rate:
            stats.resets += 1
            return await _reset_mid_body(request, json_body if not stream else b"".join(frames), stream)
        delay = faults.delay_s
        if rng.random() < faults.slow_rate:
            stats.slowed += 1
            delay += faults.slow_s
        if delay:
            await asyncio.sleep(delay)
        if not stream:
            return web.Response(body=json_body, content_type="application/json")
        stats.streams += 1
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        for frame in frames:
            await resp.write(frame)
        await resp.write_eof()
        return resp

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(asdict(stats))

    async def reset_stats(_: web.Request) -> web.Response:
        stats.requests = stats.failed = stats.slowed = stats.streams = stats.resets = stats.hangs = 0
        return web.json_response(asdict(stats))

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/stats/reset", reset_stats)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="fixed delay before every answer")
    ap.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests answered with --fail-status")
    ap.add_argument("--fail-status", type=int, default=500, choices=(500, 502, 503, 429))
    ap.add_argument("--slow-rate", type=float, default=0.0, help="fraction of requests whose first byte is slow")
    ap.add_argument("--slow-ms", type=float, default=1000.0, help="extra delay of a slow first byte")
    ap.add_argument("--reset-rate", type=float, default=0.0, help="fraction answered half-way, then reset")
    ap.add_argument("--hang-rate", type=float, default=0.0, help="fraction never answered")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    faults = Faults(args.delay_ms / 1000, args.fail_rate, args.fail_status, args.slow_rate, args.slow_ms / 1000,
                    args.reset_rate, args.hang_rate)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    web.run_app(make_app(faults, args.seed), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
