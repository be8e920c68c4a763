"""How credential flows talk to token endpoints: through the gateway's transport (an injected
:class:`Sender`), with failures classified as :class:`~fluxway.canonical.UpstreamError`.

A token endpoint's refusal (4xx) is an ``auth`` error of the provider; its 5xx, a timeout or a
refused connection keep their retryable kinds, so the call fails over like any upstream failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlencode

import orjson

from fluxway.canonical import JSON, ErrorKind, HttpCall, UpstreamError
from fluxway.transport import Reply, Timeouts

# Token endpoints answer quickly or not at all; a metadata endpoint that is not there must not stall calls.
TOKEN_TIMEOUTS = Timeouts(connect=3.0, first_token=10.0, total=15.0)
# Token answers are small.
MAX_TOKEN_BYTES = 1024 * 1024


class Sender(Protocol):
    """What a flow needs of the transport."""

    async def send(self, call: HttpCall, timeouts: Timeouts, max_bytes: int = ...) -> Reply: ...


def form(fields: Mapping[str, str]) -> bytes:
    """An ``application/x-www-form-urlencoded`` body."""
    return urlencode(dict(fields)).encode()


async def fetch(http: Sender, call: HttpCall, what: str, timeouts: Timeouts = TOKEN_TIMEOUTS) -> Reply:
    """Send one call to a credential endpoint; a 4xx or 5xx answer raises, naming ``what``."""
    try:
        reply = await http.send(call, timeouts, MAX_TOKEN_BYTES)
    except UpstreamError as err:
        err.message = f"{what}: {err.message}"
        raise
    if reply.status >= 400:
        text = reply.body[:300].decode("utf-8", "replace").strip()
        kind = ErrorKind.AUTH if reply.status < 500 else ErrorKind.UPSTREAM_5XX
        raise UpstreamError(kind, f"{what} answered HTTP {reply.status}: {text}", status=reply.status)
    return reply


async def fetch_json(http: Sender, call: HttpCall, what: str, timeouts: Timeouts = TOKEN_TIMEOUTS) -> JSON:
    """:func:`fetch`, the answer a JSON object."""
    reply = await fetch(http, call, what, timeouts)
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(ErrorKind.PROTOCOL, f"{what} answered something that is not a JSON object")
    return data


def field(data: JSON, name: str, what: str) -> str:
    """A required string field of a token answer."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise UpstreamError(ErrorKind.PROTOCOL, f"{what} answered no '{name}'")
    return value


def seconds(value: object, default: float) -> float:
    """An ``expires_in`` (a number or a numeric string) as seconds."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
