"""The minimal Python pass-through: the floor any Python gateway is measured against.

A raw ASGI callable (no framework) that reads the body, parses it with orjson (every gateway must at
least find ``model`` and ``stream``), forwards the original bytes with one shared aiohttp session to
``PASSTHROUGH_UPSTREAM`` + the request path, and returns the upstream's bytes — streamed chunk by
chunk when the request asked for a stream. No auth, no routing, no logging, no metrics.

    cd bench && PASSTHROUGH_UPSTREAM=http://127.0.0.1:9100 \
        python -m granian --interface asgi --loop uvloop --workers 1 --port 9200 passthrough:app
    cd bench && PASSTHROUGH_UPSTREAM=http://127.0.0.1:9100 \
        python -m uvicorn passthrough:app --loop uvloop --http httptools --port 9200 --no-access-log
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HOP = frozenset({"transfer-encoding", "connection", "keep-alive", "content-length", "content-encoding"})


class PassThrough:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=300, ttl_dns_cache=None)
            self.session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )
        return self.session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        try:
            req = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            await _reply(send, 400, b'{"error":{"message":"bad json","type":"invalid_request_error"}}')
            return
        stream = isinstance(req, dict) and bool(req.get("stream"))
        url = self.upstream + scope["path"]
        headers = {"content-type": "application/json", "authorization": "Bearer sk-mock"}
        try:
            async with self._session().post(url, data=body, headers=headers) as resp:
                out_headers = [
                    (k.lower().encode(), v.encode()) for k, v in resp.headers.items() if k.lower() not in _HOP
                ]
                if not stream:
                    data = await resp.read()
                    out_headers.append((b"content-length", str(len(data)).encode()))
                    await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
                    await send({"type": "http.response.body", "body": data})
                    return
                await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
                async for chunk in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except aiohttp.ClientError as exc:
            await _reply(send, 502, orjson.dumps({"error": {"message": str(exc), "type": "upstream_error"}}))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _reply(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = PassThrough(os.environ.get("PASSTHROUGH_UPSTREAM", "http://127.0.0.1:9100"))
