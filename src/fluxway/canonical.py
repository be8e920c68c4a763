"""The canonical shapes every part of Fluxway speaks.

The canonical chat request *is* an OpenAI Chat Completions body (a plain dict): it is the richest
shape in common use, OpenAI-compatible upstreams take it as it is (no copy, no re-validation on the
hot path), and every other adapter translates from it. Likewise a canonical stream chunk is an
OpenAI ``chat.completion.chunk`` dict, and a canonical response an OpenAI ``chat.completion`` dict.

This module imports no web framework, HTTP client or store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from fluxway.mcp.loop_request import McpToolEntry

JSON = dict[str, Any]


class Endpoint(StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    # The pass-through surface (api/surface.py): routed and governed, but not translated.
    IMAGES = "images"
    SPEECH = "audio.speech"
    TRANSCRIPTIONS = "audio.transcriptions"
    RERANK = "rerank"
    FILES = "files"
    BATCHES = "batches"


# The pass-through endpoints, and their paths under an OpenAI-style base URL (``/v1``).
SURFACE_PATHS: dict[Endpoint, str] = {
    Endpoint.IMAGES: "/images/generations",
    Endpoint.SPEECH: "/audio/speech",
    Endpoint.TRANSCRIPTIONS: "/audio/transcriptions",
    Endpoint.RERANK: "/rerank",
    Endpoint.FILES: "/files",
    Endpoint.BATCHES: "/batches",
}


# How a model picks among its targets (routing/plan.py implements each; config.py validates them).
Strategy = Literal["weighted", "fallback", "latency", "least-busy", "cost"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class ErrorKind(StrEnum):
    """What routing reacts to. Adapters classify upstream failures; nobody else reads status codes."""

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UPSTREAM_5XX = "upstream_5xx"
    CONNECT = "connect"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    PROTOCOL = "protocol"  # the upstream answered something we cannot parse

    @property
    def retryable(self) -> bool:
        """May the same request succeed on a retry or on another target?"""
        return self in _RETRYABLE

    @property
    def try_next_target(self) -> bool:
        """Should the executor move on to another target after this error?

        Auth and not-found errors belong to one target (its key or its model name), so another
        target may well succeed; a malformed request fails everywhere.
        """
        return self not in _CALLER_FAULT


_RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.TIMEOUT,
        ErrorKind.UPSTREAM_5XX,
        ErrorKind.CONNECT,
        ErrorKind.PROTOCOL,
    }
)
_CALLER_FAULT = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_FILTER})


class UpstreamError(Exception):
    """A failed attempt at one target, classified by its adapter or by the transport."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: JSON | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.target = target

    def __repr__(self) -> str:
        return f"UpstreamError({self.kind.value}, {self.message!r}, status={self.status}, target={self.target})"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None
    # Media prices (USD), for the pass-through endpoints: per generated image, per second of
    # transcribed audio, per million characters of speech input.
    per_image: float | None = None
    per_audio_second: float | None = None
    per_mchar: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete place a public model can go: a configured provider and its model name."""

    provider: str
    model: str
    weight: float = 1.0
    price: Price | None = None

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage | None) -> None:
        """Count ``other`` in too (the rounds of a tool loop); an estimate in makes the sum one."""
        if other is None:
            return
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.estimated = self.estimated or other.estimated

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any] | None) -> Usage | None:
        if not usage:
            return None
        details = usage.get("prompt_tokens_details") or {}
        cdetails = usage.get("completion_tokens_details") or {}
        prompt = usage.get("prompt_tokens")
        if prompt is None and not usage.get("completion_tokens"):
            prompt = usage.get("total_tokens")  # embeddings-only APIs (Voyage) report total_tokens alone
        return cls(
            prompt_tokens=int(prompt or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
            reasoning_tokens=int(cdetails.get("reasoning_tokens") or 0),
        )

    def to_openai(self) -> JSON:
        out: JSON = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


@dataclass(slots=True)
class CanonicalRequest:
    """One inference call as the gateway core sees it.

    ``body`` is the OpenAI-shaped body of the endpoint (chat, completions or embeddings). Adapters
    must treat it as read-only: the same request may be sent to several targets.
    """

    endpoint: Endpoint
    model: str
    body: JSON
    stream: bool = False
    include_usage: bool = False
    # The request's MCP tools (``{"type": "mcp"}`` entries, taken out of ``tools``): Fluxway runs
    # the tool loop (fluxway.mcp.loop). None for every other request.
    mcp_tools: tuple[McpToolEntry, ...] | None = None
    max_tool_calls: int | None = None  # the Responses API's: MCP tool calls the loop may run in all


@dataclass(slots=True)
class CanonicalResponse:
    """A whole (non-streamed) answer in OpenAI shape.

    ``raw`` holds the upstream bytes when they already are the OpenAI shape, so that an OpenAI
    ingress can send them on without serialising again.
    """

    body: JSON
    usage: Usage | None = None
    raw: bytes | None = None


@dataclass(slots=True)
class StreamChunk:
    """One OpenAI ``chat.completion.chunk`` (or ``text_completion`` chunk) of a stream."""

    data: JSON
    raw: bytes | None = None


@dataclass(slots=True)
class HttpCall:
    """What an adapter asks the transport to send. The transport knows nothing of payloads."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """The secret an adapter signs a call with (one of a provider's rotated keys), or what a
    credential flow (:mod:`fluxway.credentials`) obtained: ``extra`` holds ``bearer_token`` (an
    OAuth2 access token) or ``aws_access_key_id`` / ``aws_secret_access_key`` / ``aws_session_token``."""

    api_key: str | None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def bearer_token(self) -> str | None:
        """An OAuth2 access token to send as ``Authorization: Bearer``, if a flow obtained one."""
        return self.extra.get("bearer_token")
