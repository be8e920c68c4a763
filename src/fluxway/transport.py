"""Upstream HTTP: one pooled aiohttp session, no payload knowledge.

The transport turns network failures into classified :class:`UpstreamError` (connect, timeout) and
otherwise hands status, headers and bytes back to the adapter that asked. aiohttp itself is loaded
by the first :class:`Transport` (at the Runtime's start), not when this module is imported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fluxway.canonical import ErrorKind, HttpCall, UpstreamError

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_token: float
    total: float


@dataclass(slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float


class UpstreamStream:
    """An open streaming response. Iterate ``chunks()``; always ``close()``."""

    __slots__ = ("_resp", "elapsed_to_headers", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, elapsed: float) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.elapsed_to_headers = elapsed

    async def read(self, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> bytes:
        """The whole body (an error answer), at most ``max_bytes``."""
        try:
            return await read_bounded(self._resp, max_bytes)
        except _failures() as exc:
            raise _classify(exc) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except _failures() as exc:
            raise _classify(exc) from None

    def close(self) -> None:
        """Drop the connection (a client that went away must cancel the upstream request)."""
        self._resp.close()

    def release(self) -> None:
        """Return a fully read connection to the pool."""
        self._resp.release()


def too_large(max_bytes: int) -> UpstreamError:
    return UpstreamError(
        ErrorKind.PROTOCOL, f"upstream response larger than max_response_bytes ({max_bytes} bytes)"
    )


async def read_bounded(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """``resp.read()`` that never holds more than ``max_bytes`` (PROTOCOL UpstreamError beyond).

    With a content-length within the bound this is one ``read()``; otherwise (chunked, or no
    length) the body is gathered piece by piece and the connection dropped once it is over.
    """
    length = resp.content_length
    if length is not None:
        if length > max_bytes:
            resp.close()
            raise too_large(max_bytes)
        return await resp.read()
    buf = bytearray()
    while True:
        piece = await resp.content.readany()
        if not piece:
            return bytes(buf)
        buf += piece
        if len(buf) > max_bytes:
            resp.close()
            raise too_large(max_bytes)


def _failures() -> tuple[type[BaseException], ...]:
    """What a request through aiohttp raises when the network fails it, for ``except _failures()``:
    an ``except`` clause evaluates this only once an exception is raised, so a call that succeeds
    pays nothing for the lazy import."""
    import aiohttp

    return (TimeoutError, aiohttp.ClientError)


def _classify(exc: BaseException) -> UpstreamError:
    import aiohttp

    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(ErrorKind.TIMEOUT, "upstream timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(ErrorKind.CONNECT, f"cannot connect to upstream: {exc.os_error or exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return UpstreamError(ErrorKind.UPSTREAM_5XX, f"upstream connection broke: {exc.__class__.__name__}")
    return UpstreamError(ErrorKind.CONNECT, f"upstream request failed: {exc}")


class Transport:
    """Owns the connection pool; create it inside a running event loop, ``close()`` it at shutdown.

    URLs go out exactly as adapters built them (already encoded: a signed request must not be
    re-encoded on the way out).
    """

    def __init__(self, *, limit: int = 0, keepalive: float = 60.0) -> None:
        import aiohttp

        self._connector = aiohttp.TCPConnector(
            limit=limit, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=keepalive
        )
        self._session = aiohttp.ClientSession(
            connector=self._connector,
            # Ask for identity encoding (no Accept-Encoding): LLM answers are small and arrive as
            # SSE that must reach the client as it comes; decompressing costs CPU on every response.
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            auto_decompress=False,
            json_serialize=None,  # type: ignore[arg-type]
        )
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
        self._urls: dict[str, URL] = {}

    def _timeout(self, t: Timeouts) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(t)
        if found is None:
            import aiohttp

            found = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.first_token)
            if len(self._timeouts) < 256:
                self._timeouts[t] = found
        return found

    def _url(self, url: str) -> URL:
        """Parsed once per distinct URL (a provider's few endpoints), not once per request."""
        found = self._urls.get(url)
        if found is None:
            from yarl import URL

            found = URL(url, encoded=True)
            if len(self._urls) < 4096:
                self._urls[url] = found
        return found

    async def send(
        self, call: HttpCall, timeouts: Timeouts, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    ) -> Reply:
        """A whole request and response (a body over ``max_bytes`` fails the call)."""
        t0 = time.perf_counter()
        try:
            async with self._session.request(
                call.method, self._url(call.url), data=call.body, headers=call.headers,
                timeout=self._timeout(timeouts),
            ) as resp:
                body = await read_bounded(resp, max_bytes)
                return Reply(resp.status, resp.headers, body, time.perf_counter() - t0)
        except _failures() as exc:
            raise _classify(exc) from None

    async def open_stream(self, call: HttpCall, timeouts: Timeouts) -> UpstreamStream:
        """Send a request and return once the response headers are in."""
        t0 = time.perf_counter()
        try:
            resp = await self._session.request(
                call.method, self._url(call.url), data=call.body, headers=call.headers,
                timeout=self._timeout(timeouts),
            )
        except _failures() as exc:
            raise _classify(exc) from None
        return UpstreamStream(resp, time.perf_counter() - t0)

    async def close(self) -> None:
        await self._session.close()
