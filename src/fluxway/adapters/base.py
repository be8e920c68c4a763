"""The adapter seam: every provider is one class implementing :class:`Adapter`.

Adapters are pure: they build an :class:`HttpCall` from a canonical request, parse bytes into
canonical responses or stream chunks, and classify failures into an :class:`ErrorKind`. They do no
I/O, read no globals and hold no per-request state outside their stream decoders.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import orjson

from fluxway.canonical import (
    JSON,
    CanonicalRequest,
    CanonicalResponse,
    Credentials,
    Endpoint,
    ErrorKind,
    HttpCall,
    StreamChunk,
    Target,
    UpstreamError,
)

Headers = Mapping[str, str]


class StreamDecoder(Protocol):
    """Turns an upstream byte stream into canonical chunks, incrementally."""

    def feed(self, data: bytes) -> list[StreamChunk]:
        """Bytes as they arrive (any split); the chunks they complete. Raises UpstreamError."""
        ...

    def close(self) -> list[StreamChunk]:
        """The upstream closed: the last chunks; raises UpstreamError if the stream was cut short."""
        ...


class Adapter(Protocol):
    """One provider's wire format."""

    def supports(self, endpoint: Endpoint) -> bool: ...

    def build(self, req: CanonicalRequest, target: Target, creds: Credentials) -> HttpCall: ...

    def parse(
        self, req: CanonicalRequest, target: Target, status: int, headers: Headers, body: bytes
    ) -> CanonicalResponse:
        """A whole answer; raises UpstreamError (via classify_error) for an error status."""
        ...

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> StreamDecoder: ...

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError: ...


class SurfaceAdapter(Protocol):
    """An adapter that also serves pass-through endpoints (``supports`` says which): it only knows
    where they live and how to sign them; the bodies go through as they are (``api/surface.py``)."""

    def supports(self, endpoint: Endpoint) -> bool: ...

    def surface_call(
        self,
        endpoint: Endpoint,
        target: Target,
        creds: Credentials,
        method: str,
        suffix: str = "",
        query: str = "",
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> HttpCall:
        """The call for ``method`` on the endpoint's path plus ``suffix`` (``/{id}/content``) with
        the client's ``query`` string (already encoded)."""
        ...

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError: ...


def with_query(url: str, query: str) -> str:
    """``url`` with an encoded query string appended (after any the URL has)."""
    if not query:
        return url
    return url + ("&" if "?" in url else "?") + query


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads_object(body: bytes, what: str = "response") -> JSON:
    """Parse an upstream JSON object or raise a PROTOCOL UpstreamError."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        snippet = body[:200].decode("utf-8", "replace")
        raise UpstreamError(ErrorKind.PROTOCOL, f"upstream sent an invalid JSON {what}: {snippet!r}") from None
    if not isinstance(data, dict):
        raise UpstreamError(ErrorKind.PROTOCOL, f"upstream sent a JSON {what} that is not an object")
    return data


def retry_after_seconds(headers: Headers) -> float | None:
    """``retry-after`` (seconds or, rarely, ms variants some vendors send) as seconds."""
    for name in ("retry-after-ms", "x-ratelimit-reset-after-ms"):
        v = headers.get(name)
        if v:
            try:
                return max(0.0, float(v) / 1000.0)
            except ValueError:
                pass
    v = headers.get("retry-after")
    if v:
        try:
            return max(0.0, float(v))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(v).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
)


def kind_for_status(status: int, message: str = "", code: str = "") -> ErrorKind:
    """The generic HTTP status -> ErrorKind mapping adapters start from."""
    text = f"{code} {message}".lower()
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status in (408, 504):
        return ErrorKind.TIMEOUT
    if status == 529 or (status == 503 and "overload" in text):
        return ErrorKind.OVERLOADED
    if status >= 500:
        return ErrorKind.UPSTREAM_5XX
    if any(m in text for m in _CONTEXT_MARKERS):
        return ErrorKind.CONTEXT_LENGTH
    if "content_filter" in text or "content management policy" in text or "safety" in text:
        return ErrorKind.CONTENT_FILTER
    if status == 413:
        return ErrorKind.CONTEXT_LENGTH
    return ErrorKind.BAD_REQUEST


def openai_chunk(
    id_: str,
    created: int,
    model: str,
    delta: JSON | None = None,
    finish: str | None = None,
    *,
    index: int = 0,
    usage: JSON | None = None,
) -> StreamChunk:
    """One canonical ``chat.completion.chunk``: a delta of choice ``index``, or (delta None) the
    choice-less chunk that carries a stream's usage."""
    data: JSON = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [] if delta is None else [
            {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        ],
    }
    if usage is not None:
        data["usage"] = usage
    return StreamChunk(data)
