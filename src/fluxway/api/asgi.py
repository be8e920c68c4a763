"""Small raw-ASGI helpers for the hot path (no framework between the server and the handler)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fluxway.errors import GatewayError

GUARDED = "fluxway.guarded"  # set in the scope by fluxway.api.server_protocol (it keeps the body timeout)
BODY_TIMED_OUT = "fluxway.body_timed_out"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

JSON_CT = (b"content-type", b"application/json")
SSE_HEADERS: RawHeaders = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def request_headers(scope: Scope) -> dict[str, str]:
    """Header names are lower-case in ASGI; a repeated header keeps its last value."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(
    receive: Receive, headers: dict[str, str], limit: int, timeout: float | None = None, scope: Scope | None = None
) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with 413 and a body that takes
    longer than ``timeout`` seconds with 408. Under Fluxway's HTTP protocol (the scope says so) the
    protocol keeps the time, at no cost for a body that is already in; elsewhere a timer here does."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    if scope is not None and scope.get(GUARDED):
        return await _read_body(receive, limit, scope, timeout)
    if timeout is None or declared == "0":
        return await _read_body(receive, limit, None, timeout)
    try:
        async with asyncio.timeout(timeout):
            return await _read_body(receive, limit, None, timeout)
    except TimeoutError:
        raise body_timeout(timeout) from None


async def _read_body(receive: Receive, limit: int, scope: Scope | None, timeout: float | None) -> bytes:
    msg = await receive()
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while True:
        if scope is not None and scope.get(BODY_TIMED_OUT):
            raise body_timeout(timeout or 0.0)
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise GatewayError(400, "the client went away while sending the body", code="client_disconnected")
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
        if not msg.get("more_body"):
            return b"".join(parts)


def body_timeout(timeout: float) -> GatewayError:
    return GatewayError(  # and close: a client still trickling the body must not keep the connection
        408,
        f"the request body was not received within {timeout:g} s",
        code="request_timeout",
        headers={"connection": "close"},
    )


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"the request body exceeds the limit of {limit} bytes", code="request_too_large")


async def respond(send: Send, status: int, body: bytes, headers: RawHeaders) -> None:
    """A whole response; with its content-length (no chunked encoding for the client to undo)."""
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
