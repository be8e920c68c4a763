"""Probe: slow clients and cut streams against a real ``fluxway serve`` process (issue 9 #4, #6).

    PYTHONPATH=src python scripts/probe_slow_clients.py [--slow-bodies 4096] [--idle 12000] [--streams 50]

Prints one JSON object of figures: what other tenants saw while an rpm=1 key sent slow bodies, how
idle slowloris connections were answered (408 / 503) and whether the master key was served, and
usage records against client-seen streams when streams are cut at shutdown or by ``kill -9``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web

MASTER = "sk-master-probe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def mock_upstream() -> tuple[web.AppRunner, str]:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response({
                "id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(600):  # a minute of words
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await asyncio.sleep(0.1)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


class Server:
    def __init__(self, tmp: Path, upstream: str, **server: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp / "fluxway.db"
        self.cfg = tmp / f"gw-{self.port}.yaml"
        self.cfg.write_text(yaml.safe_dump({
            "server": server,
            "auth": {"master_key": MASTER},
            "store": {"url": f"sqlite:///{self.db}"},
            "usage": {"spool_dir": str(tmp / "spool"), "flush_interval_ms": 100},
            "providers": [{"name": "up", "type": "openai", "base_url": upstream + "/v1", "api_keys": ["sk"]}],
            "models": [{"name": "smart", "targets": [{"provider": "up", "model": "m"}]}],
        }))
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fluxway", "serve", "-c", str(self.cfg), "--port", str(self.port),
             "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        async with aiohttp.ClientSession() as s:
            for _ in range(400):
                try:
                    async with s.get(self.url + "/health/live") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("gateway did not start")

    async def stop(self, sig: int = signal.SIGTERM) -> float:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        await asyncio.to_thread(self.proc.wait)
        return time.monotonic() - t0

    async def key(self, **fields: Any) -> str:
        async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s, \
                s.post(self.url + "/admin/keys", json={"name": "p", **fields}) as r:
            return str((await r.json())["key"])


async def chat(s: aiohttp.ClientSession, url: str, key: str) -> int:
    try:
        async with s.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]}) as r:
            await r.read()
            return r.status
    except aiohttp.ClientError as exc:
        return -1 if not isinstance(exc, aiohttp.ServerDisconnectedError) else -2


async def raw_status(reader: asyncio.StreamReader, timeout: float) -> int:
    try:
        data = await asyncio.wait_for(reader.read(64), timeout)
    except (TimeoutError, OSError):
        return -1
    return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0


async def probe_slow_bodies(tmp: Path, upstream: str, n: int, per_key: int = 0) -> dict[str, Any]:
    srv = Server(tmp, upstream, body_timeout_s=10, max_concurrency_per_key=per_key)
    await srv.start()
    try:
        slow_key, other = await srv.key(rpm=1), await srv.key()
        conns = []
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nauthorization: Bearer " + slow_key.encode()
                + b"\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"model\"")
        for _ in range(n):
            r, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(head)
            conns.append((r, w))
        await asyncio.sleep(1.0)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=10)) as s:
            t0 = time.monotonic()
            others = await asyncio.gather(*(chat(s, srv.url, other) for _ in range(50)))
            took = time.monotonic() - t0
            master = await asyncio.gather(*(chat(s, srv.url, MASTER) for _ in range(10)))
        slow = await asyncio.gather(*(raw_status(r, 20) for r, _ in conns))
        for _, w in conns:
            w.close()
        return {"slow_bodies": n, "max_concurrency_per_key": per_key,
                "other_key_50_calls": dict(collections.Counter(others)),
                "other_key_seconds": round(took, 2), "master_10_calls": dict(collections.Counter(master)),
                "slow_bodies_answered": dict(collections.Counter(slow))}
    finally:
        await srv.stop()


async def probe_slowloris(tmp: Path, upstream: str, n: int) -> dict[str, Any]:
    srv = Server(tmp, upstream, header_timeout_s=5)
    await srv.start()
    try:
        conns = []
        for _ in range(n):
            try:
                conns.append(await asyncio.open_connection("127.0.0.1", srv.port))
            except OSError:
                break
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as s:
            master_during = await chat(s, srv.url, MASTER)
            t0 = time.monotonic()
            answers = await asyncio.gather(*(raw_status(r, 15) for r, _ in conns))
            waited = time.monotonic() - t0
            master_after = await chat(s, srv.url, MASTER)
        for _, w in conns:
            w.close()
        return {"idle_connections": n, "opened": len(conns), "answered": dict(collections.Counter(answers)),
                "seconds_until_all_answered": round(waited, 2), "master_while_held": master_during,
                "master_after": master_after, "server_alive": srv.proc is not None and srv.proc.poll() is None}
    finally:
        await srv.stop()


async def records(db: Path) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute("SELECT status, error, completion_tokens FROM usage_records WHERE stream")]


async def open_streams(url: str, n: int) -> tuple[aiohttp.ClientSession, list[aiohttp.ClientResponse]]:
    s = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    out = []
    for _ in range(n):
        r = await s.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {MASTER}"},
                         json={"model": "smart", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        if r.status == 200:
            await r.content.readuntil(b"\n\n")
            out.append(r)
    return s, out


async def probe_cut_streams(tmp: Path, upstream: str, n: int, sig: int) -> dict[str, Any]:
    sub = tmp / ("term" if sig == signal.SIGTERM else "kill")
    sub.mkdir()
    srv = Server(sub, upstream, drain_s=2)
    await srv.start()
    s, streams = await open_streams(srv.url, n)
    await asyncio.sleep(1.0)
    took = await srv.stop(sig)
    tails = []
    for r in streams:
        try:
            tails.append(await asyncio.wait_for(r.content.read(), 5))
        except (aiohttp.ClientError, TimeoutError):
            tails.append(b"")
    await s.close()
    if sig == signal.SIGKILL:  # the next start replays the spool
        await srv.start()
        await srv.stop()
    rows = await records(srv.db)
    return {"signal": signal.Signals(sig).name, "client_seen_streams": len(streams), "records": len(rows),
            "statuses": dict(collections.Counter(r["status"] for r in rows)),
            "errors": dict(collections.Counter((r["error"] or "").split(" (")[0] for r in rows)),
            "with_completion_tokens": sum(1 for r in rows if r["completion_tokens"]),
            "clients_saw_error_event": sum(b"shutting down" in t for t in tails),
            "stop_seconds": round(took, 2)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slow-bodies", type=int, default=4096)
    ap.add_argument("--idle", type=int, default=12000)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--per-key", type=int, default=100,
                    help="server.max_concurrency_per_key for the flood past the connection cap")
    args = ap.parse_args()
    runner, upstream = await mock_upstream()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, coro in (
            ("slow_bodies", probe_slow_bodies(tmp / "a", upstream, args.slow_bodies)),
            ("slow_bodies_past_the_cap", probe_slow_bodies(tmp / "d", upstream, 11000, args.per_key)),
            ("slowloris", probe_slowloris(tmp / "b", upstream, args.idle)),
            ("shutdown_cut", probe_cut_streams(tmp / "c", upstream, args.streams, signal.SIGTERM)),
            ("kill_9", probe_cut_streams(tmp / "c", upstream, args.streams, signal.SIGKILL)),
        ):
            for sub in ("a", "b", "c", "d"):
                os.makedirs(tmp / sub, exist_ok=True)
            out[name] = await coro
            print(name, json.dumps(out[name]), file=sys.stderr, flush=True)
    await runner.cleanup()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
