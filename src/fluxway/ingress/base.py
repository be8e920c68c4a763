"""The ingress seam: one class per API shape the gateway answers in (OpenAI, Anthropic, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from fluxway.canonical import CanonicalRequest, CanonicalResponse, Endpoint, StreamChunk, Usage
from fluxway.errors import GatewayError


class StreamEncoder(Protocol):
    """Renders canonical chunks as the caller's SSE frames; stateful, one per stream."""

    def chunk(self, chunk: StreamChunk) -> bytes:
        """Frames for one chunk (may be empty)."""
        ...

    def finish(self, usage: Usage | None) -> bytes:
        """Frames closing a completed stream."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """Frames reporting a failure after the stream started, closing it."""
        ...


class Ingress(Protocol):
    name: str
    content_type: str

    def api_key(self, headers: Mapping[str, str]) -> str | None: ...

    def parse(self, endpoint: Endpoint, body: bytes) -> CanonicalRequest:
        """The caller's body -> canonical request; raises GatewayError (400, field named)."""
        ...

    def render(self, req: CanonicalRequest, resp: CanonicalResponse) -> bytes: ...

    def stream_encoder(self, req: CanonicalRequest, request_id: str) -> StreamEncoder: ...

    def render_error(self, err: GatewayError) -> bytes: ...

    def extra_headers(self, request_id: str) -> list[tuple[bytes, bytes]]:
        """Headers this API shape adds to every answer (Anthropic's ``request-id``)."""
        ...


class Session(Protocol):
    """A call with state of its own across the pipeline (the Responses API's stored responses)."""

    async def prepare(self, owner: str) -> None:
        """Once the caller's key is known, before any hook sees the request; may raise GatewayError."""
        ...

    async def commit(self) -> None:
        """Just before the final answer (or the stream's final frames) is sent."""
        ...


def bearer_token(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None
