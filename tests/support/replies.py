"""Answers a fake upstream gives: response builders (:func:`json_reply`, :func:`sse_reply`) and
canned handlers to script its routes with (:func:`replying`, :func:`streaming`,
:func:`json_or_stream`, :func:`delayed`, :func:`in_turn`)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


async def sse_reply(
    request: web.Request,
    frames: Sequence[bytes],
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


def sse_events(data: bytes) -> list[bytes]:
    """A recorded SSE file as its events, each with its blank line, as an upstream writes them
    (one write each, so they cross the wire as separate TCP sends)."""
    return [f for f in re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)", data) if f]


def replying(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering every request with the JSON ``body``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return json_reply(body, status, headers)

    return handle


def streaming(
    frames: Sequence[bytes], delay: float = 0.0, content_type: str = "text/event-stream"
) -> Handler:
    """A handler answering every request with the stream ``frames``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await sse_reply(request, frames, delay, content_type=content_type)

    return handle


def json_or_stream(body: Any, frames: Sequence[bytes], delay: float = 0.0) -> Handler:
    """A handler answering the JSON ``body``, or the stream ``frames`` when the request's JSON body
    asks ``"stream": true`` (OpenAI and Anthropic alike)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if (await request.json()).get("stream"):
            return await sse_reply(request, frames, delay)
        return json_reply(body)

    return handle


def delayed(seconds: float | Callable[[web.Request, bytes], float], then: Handler) -> Handler:
    """A handler that sleeps ``seconds`` (or what ``seconds(request, body)`` says for this request),
    then answers as ``then``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        wait = seconds(request, await request.read()) if callable(seconds) else seconds
        if wait:
            await asyncio.sleep(wait)
        return await then(request)

    return handle


def in_turn(*handlers: Handler) -> Handler:
    """A handler passing request 1 to ``handlers[0]``, request 2 to ``handlers[1]``, ... round and round."""
    turns = itertools.cycle(handlers)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await next(turns)(request)

    return handle
