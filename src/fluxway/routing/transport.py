"""The executor's I/O seam: what it needs to carry out one upstream attempt.

The executor builds an :class:`~fluxway.canonical.HttpCall` with the target's adapter and hands it to
a :class:`Transport`: ``send`` for a whole answer, ``open_stream`` for a streamed one. Production
passes :class:`fluxway.transport.Transport` (one pooled aiohttp session); unit tests pass an
in-memory fake that scripts each target's behaviour (``tests/support/fake_transport.py``).

A transport raises classified :class:`~fluxway.canonical.UpstreamError` for network failures
(connect, timeout, a broken connection) and otherwise returns status, headers and bytes untouched:
the adapter that built the call classifies error statuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from fluxway.canonical import HttpCall
from fluxway.transport import DEFAULT_MAX_RESPONSE_BYTES, Reply, Timeouts

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "OpenStream", "Reply", "Timeouts", "Transport"]


class OpenStream(Protocol):
    """A streaming response whose headers are in. Iterate ``chunks()``; always ``close()``."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> bytes:
        """The whole body (an error answer), at most ``max_bytes``."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises UpstreamError if the connection breaks."""
        ...

    def close(self) -> None:
        """Drop the connection (the attempt is abandoned)."""
        ...

    def release(self) -> None:
        """The body was read to its end: the connection may be reused."""
        ...


class Transport(Protocol):
    """Sends the calls adapters build."""

    async def send(
        self, call: HttpCall, timeouts: Timeouts, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    ) -> Reply:
        """A whole request and response (a body over ``max_bytes`` fails the call)."""
        ...

    async def open_stream(self, call: HttpCall, timeouts: Timeouts) -> OpenStream:
        """Send a request and return once the response headers are in."""
        ...
