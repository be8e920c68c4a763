"""The ``events`` config section: the sinks events are delivered to, each with its delivery settings.

Imports only pydantic and the config base, so loading a config costs no sink library.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from fluxway.config_base import Strict

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class SinkBase(Strict):
    # The sink's name: events name sinks by it (`alerts[].notify`) and metrics label by it.
    name: str
    # Seconds before the first retry of a failed delivery; doubled each further failure (with jitter).
    backoff_s: float = Field(1.0, gt=0, le=3600)
    # The cap on the retry backoff, in seconds.
    max_backoff_s: float = Field(60.0, gt=0, le=86400)
    # Undelivered events kept for this sink at most: past it the oldest are dropped (and counted in
    # fluxway_event_sink_dropped_total), so a sink that is down for long cannot fill the store.
    max_backlog: int = Field(100_000, ge=1)
    # Events read and delivered per round.
    batch_size: int = Field(100, ge=1, le=10_000)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"expected 1-64 letters, digits, '_', '.' or '-', got {v!r}")
        return v


class WebhookSink(SinkBase):
    # `webhook`: each event POSTed as JSON, HMAC-signed.
    type: Literal["webhook"]
    # Events are POSTed here as JSON, one per request.
    url: str
    # The HMAC-SHA256 key of the `x-fluxway-signature: sha256=<hex>` header (over the raw body).
    secret: str = Field(min_length=1)
    # Extra request headers (an auth token, say).
    headers: dict[str, str] = Field(default_factory=dict)
    # Seconds one delivery may take; longer counts as a failure (retried).
    timeout_s: float = Field(10.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"https?://[^/\s]+", v):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v


class RedisStreamSink(SinkBase):
    # `redis_stream`: each event XADDed to a Redis stream.
    type: Literal["redis_stream"]
    # The stream events are XADDed to (on the top-level `redis.url`); field `event` holds the JSON.
    stream: str = Field(min_length=1)
    # Trim the stream to about this many entries (XADD MAXLEN ~); None: never trimmed.
    maxlen: int | None = Field(None, ge=1)


class NatsSink(SinkBase):
    # `nats`: each event published on a NATS subject.
    type: Literal["nats"]
    # The NATS server, `nats://host:port`.
    url: str
    # The subject events are published on.
    subject: str = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"(nats|tls)://[^/\s]+", v):
            raise ValueError(f"expected a nats:// or tls:// URL, got {v!r}")
        return v

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        if any(c.isspace() for c in v) or "*" in v or ">" in v:
            raise ValueError(f"expected a subject without spaces or wildcards, got {v!r}")
        return v


SinkConfig = Annotated[WebhookSink | RedisStreamSink | NatsSink, Field(discriminator="type")]


def sink_problems(sinks: tuple[WebhookSink | RedisStreamSink | NatsSink, ...], redis_url: str | None) -> list[str]:
    """Cross-checks of the ``events`` list: unique names, Redis Streams only with ``redis.url``."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, s in enumerate(sinks):
        if s.name in seen:
            problems.append(f"events[{i}].name: duplicate sink name '{s.name}'")
        seen.add(s.name)
        if s.type == "redis_stream" and not redis_url:
            problems.append(f"events[{i}].type: a redis_stream sink needs the top-level redis.url")
        if s.max_backoff_s < s.backoff_s:
            problems.append(f"events[{i}].max_backoff_s: must be at least backoff_s ({s.backoff_s})")
    return problems
