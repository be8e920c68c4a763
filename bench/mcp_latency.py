"""Benchmark: what a tool call through Fluxway's ``/mcp`` adds to calling the MCP server directly.

    python bench/mcp_latency.py [--calls N] [--warmup N] [--no-save]

The MCP server is the tests' real one (``tests/support/mcp_server.py``: the official SDK's server over
streamable HTTP, pinned to core 1); ``fluxway serve`` (one worker, core 0) has it as its upstream
``docs``. One official-SDK client session per path (initialised once, outside the timing) calls the
``echo`` tool N times, one call after another, alternating paths in blocks so a burst of other work on
the machine hits both alike: directly at the server's ``/mcp``, and through Fluxway's ``/mcp`` as
``docs.echo`` with a virtual key (allowlist, rpm limit, call log, metrics and usage record all on).
Reported: median, p90 and p99 of each path and the difference. Results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import yaml
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from fluxway_bench.processes import Service, free_port, http_request, wait_ready

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MASTER = "sk-bench-master"
BLOCK = 50  # calls per path before switching


@asynccontextmanager
async def session(url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        yield s


def summary(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100)
    return {"median_ms": round(statistics.median(ms), 2), "p90_ms": round(q[89], 2), "p99_ms": round(q[98], 2),
            "calls": len(ms)}


async def measure(direct_url: str, gateway_url: str, key: str, calls: int, warmup: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"direct": [], "fluxway": []}
    async with session(direct_url, {}) as direct, \
            session(gateway_url, {"authorization": f"Bearer {key}"}) as gateway:
        listed = {t.name for t in (await gateway.list_tools()).tools}
        if "docs.echo" not in listed:
            raise SystemExit(f"Fluxway's /mcp does not list docs.echo (it lists {sorted(listed)})")
        paths: dict[str, Callable[[], Awaitable[Any]]] = {
            "direct": lambda: direct.call_tool("echo", {"text": "hello"}),
            "fluxway": lambda: gateway.call_tool("docs.echo", {"text": "hello"}),
        }
        for call in paths.values():
            for _ in range(warmup):
                await call()
        while len(times["fluxway"]) < calls:
            for name, call in paths.items():
                for _ in range(min(BLOCK, calls - len(times[name]))):
                    started = time.perf_counter()
                    result = await call()
                    times[name].append((time.perf_counter() - started) * 1000.0)
                    if result.is_error:
                        raise SystemExit(f"{name}: the tool call failed: {result.content}")
    direct_s, fluxway_s = summary(times["direct"]), summary(times["fluxway"])
    return {
        "direct": direct_s, "fluxway": fluxway_s,
        "added_median_ms": round(fluxway_s["median_ms"] - direct_s["median_ms"], 2),
        "added_p90_ms": round(fluxway_s["p90_ms"] - direct_s["p90_ms"], 2),
    }


def wait_listening(service: Service, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and service.alive():
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{service.name} did not start:\n{service.log_tail()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000, help="measured calls per path")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fluxway-bench-mcp-"))
    services: list[Service] = []
    mcp_port, port = free_port(), free_port()
    try:
        env_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        os.environ["PYTHONPATH"] = env_path  # the server module lives in tests/support
        services.append(Service("mcp", [sys.executable, "-m", "tests.support.mcp_server", "http", str(mcp_port)],
                                work / "mcp.log", core=1, cwd=ROOT).start())
        wait_listening(services[-1], mcp_port)
        cfg = {
            "server": {"host": "127.0.0.1", "port": port, "workers": 1},
            "auth": {"master_key": MASTER},
            "store": {"url": f"sqlite:///{work}/fluxway.db"},
            "usage": {"spool_dir": str(work / "spool")},
            "mcp": {"servers": [{"name": "docs", "transport": "streamable_http",
                                 "url": f"http://127.0.0.1:{mcp_port}/mcp"}]},
        }
        (work / "fluxway.yaml").write_text(yaml.safe_dump(cfg))
        services.append(Service("fluxway", ["fluxway", "serve", "--config", str(work / "fluxway.yaml")],
                                work / "fluxway.log", core=0).start())
        base = f"http://127.0.0.1:{port}"
        wait_ready(services[-1], base + "/health", 60)
        status, body = http_request(
            base + "/admin/keys", json.dumps({"name": "bench", "mcp_tools": ["docs.*"], "rpm": 1_000_000}).encode(),
            headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"},
        )
        if status not in (200, 201):
            raise SystemExit(f"creating the key failed: {status} {body!r}")
        key = json.loads(body)["key"]
        result = asyncio.run(measure(f"http://127.0.0.1:{mcp_port}/mcp", base + "/mcp", key,
                                     args.calls, args.warmup))
    finally:
        for svc in reversed(services):
            svc.stop()
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "tool": "echo", **result}
    print(json.dumps(result, indent=2))
    if not args.no_save:
        out = HERE / "results" / f"{time.strftime('%Y-%m-%d')}-mcp-latency.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {out}")


if __name__ == "__main__":
    main()
