"""A local HTTP server that plays an upstream provider in tests, recording every request it gets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class FakeUpstream:
    """``async with FakeUpstream() as up: up.route("POST", "/v1/chat/completions", handler)``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], Handler] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0

    def route(self, method: str, path: str, handler: Handler) -> None:
        self._routes[(method.upper(), path)] = handler

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return web.json_response({"error": {"message": f"no route {request.method} {request.path}"}}, status=404)
        return await handler(request)

    async def __aenter__(self) -> FakeUpstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


async def sse_reply(
    request: web.Request,
    frames: list[bytes],
    delay: float = 0.0,
    headers: dict[str, str] | None = None,
    content_type: str = "text/event-stream",
) -> web.StreamResponse:
    """Send ``frames`` (already framed bytes) one write each, ``delay`` seconds apart."""
    resp = web.StreamResponse(headers={"content-type": content_type, **(headers or {})})
    await resp.prepare(request)
    for i, frame in enumerate(frames):
        if delay and i:
            await asyncio.sleep(delay)
        await resp.write(frame)
    await resp.write_eof()
    return resp


def openai_sse(chunks: list[dict[str, Any]], done: bool = True) -> list[bytes]:
    """OpenAI chunks as SSE frames, ending with ``[DONE]``."""
    frames = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return frames
