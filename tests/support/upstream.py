"""A local HTTP server that plays an upstream provider in tests, recording every request it gets.

Routes are scripted per ``(method, path)`` with handlers (see :mod:`tests.support.replies` for
canned ones); ``fallback`` answers the rest (by default a 404). ``refuse()`` closes the listener and
drops open connections, ``listen()`` opens it again on the same port.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.support.openai_bodies import openai_sse
from tests.support.replies import Handler, json_reply, sse_reply

__all__ = ["FakeUpstream", "Handler", "Recorded", "json_reply", "openai_sse", "sse_reply"]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""  # the request target as sent, still percent-encoded

    def json(self) -> Any:
        return orjson.loads(self.body)

    @classmethod
    async def of(cls, request: web.Request) -> Recorded:
        return cls(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
            request.raw_path,
        )


async def _not_found(request: web.Request) -> web.StreamResponse:
    return json_reply({"error": {"message": f"no route {request.method} {request.path}"}}, status=404)


class FakeUpstream:
    """``async with FakeUpstream() as up: up.route("POST", "/v1/chat/completions", handler)``.

    ``cancel_on_disconnect``: a handler is cancelled when its client goes away (aiohttp's
    ``handler_cancellation``) instead of running on.
    """

    def __init__(self, fallback: Handler = _not_found, *, cancel_on_disconnect: bool = False) -> None:
        self.requests: list[Recorded] = []
        self.fallback = fallback
        self._routes: dict[tuple[str, str], Handler] = {}
        self._cancel = cancel_on_disconnect
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.url = ""
        self.port = 0

    def route(self, method: str, path: str, handler: Handler) -> None:
        self._routes[(method.upper(), path)] = handler

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await Recorded.of(request))
        handler = self._routes.get((request.method, request.path), self.fallback)
        return await handler(request)

    async def __aenter__(self) -> FakeUpstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=0.1, handler_cancellation=self._cancel
        )
        await self._runner.setup()
        await self.listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def listening(self) -> bool:
        return self._site is not None

    async def listen(self) -> None:
        """Listen (again) on this upstream's port: the first call picks a free one."""
        assert self._runner is not None, "enter the upstream first"
        for _ in range(100):
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            try:
                await site.start()
            except OSError:  # the port is briefly held after a stop
                await asyncio.sleep(0.01)
                continue
            self._site = site
            if not self.port:
                server = site._server
                assert server is not None and server.sockets  # type: ignore[attr-defined]
                self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
                self.url = f"http://127.0.0.1:{self.port}"
            return
        raise RuntimeError(f"cannot listen on 127.0.0.1:{self.port} again")

    async def refuse(self) -> None:
        """Stop listening (connecting is refused) and drop the open connections."""
        assert self._runner is not None, "enter the upstream first"
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self._runner.server
        if server is not None:
            for conn in list(server.connections):
                conn.force_close()
