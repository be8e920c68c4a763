"""Run the real gateway app in-process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from fluxway.api.server_protocol import GuardedHttpToolsProtocol
from fluxway.app import FluxwayApp, create_app
from fluxway.config import Config, StoreConfig, parse
from fluxway.runtime import Runtime


@dataclass
class Gateway:
    url: str
    app: FluxwayApp

    @property
    def runtime(self) -> Runtime:
        assert self.app.runtime is not None
        return self.app.runtime


@asynccontextmanager
async def run_gateway(
    config: Mapping[str, Any] | Config, env: Mapping[str, str] | None = None
) -> AsyncIterator[Gateway]:
    scratch = tempfile.TemporaryDirectory(prefix="fluxway-gw-")  # the store, unless the test names one
    if not isinstance(config, Config) and "store" not in config:
        config = {**config, "store": {"url": f"sqlite:///{scratch.name}/fluxway.db"}}
    cfg = config if isinstance(config, Config) else parse(dict(config), env or {})
    if "store" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"store": StoreConfig(url=f"sqlite:///{scratch.name}/fluxway.db")})
    app = create_app(cfg)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: without it every response (start + body sends) stalls ~40 ms on
    # Nagle + delayed ACK, because a pre-bound socket skips the event loop's own TCP_NODELAY.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            http=GuardedHttpToolsProtocol,
            access_log=False,
            timeout_graceful_shutdown=cfg.server.drain_s,
        )
    )
    # _serve: serve() without taking over the process's signal handlers.
    task = asyncio.create_task(server._serve([sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
            raise RuntimeError("the gateway stopped during startup")
        if not server.started:
            raise RuntimeError("the gateway did not start within 5 s")
        yield Gateway(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
        scratch.cleanup()
