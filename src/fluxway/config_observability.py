"""The config's observability and admin blocks: metrics access, logs and captured bodies, OTLP
traces, alert evaluation, and the GraphQL admin endpoint (sections ``observability`` and ``admin``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from fluxway.config_base import Strict
from fluxway.events.alerts.settings import AlertingConfig


class MetricsConfig(Strict):
    # When set, GET /metrics needs "Authorization: Bearer <token>" (or an admin key); else it is open.
    token: str | None = None

    @field_validator("token")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None


class LogsConfig(Strict):
    """Log lines, and the request and response bodies kept with each usage record."""

    # Log lines on stderr: `text` (one readable line each) or `json` (one JSON object per line:
    # ts, level, logger, message, and for request lines request_id, trace_id, key_id, model,
    # provider, status and latencies). Applied to every worker of `--workers N`.
    format: Literal["text", "json"] = "text"
    # One INFO line per call (logger `fluxway.request`) with its status and latencies; off, only
    # rejected and failed calls are logged.
    requests: bool = False
    # Bodies stored with each usage record (/admin/logs?bodies=true): `off` (none), `redacted`
    # (secrets and PII patterns masked: emails, phone, card, IBAN and US SSN numbers) or `full`.
    bodies: Literal["off", "redacted", "full"] = "redacted"
    # Each body is cut to this many bytes of its JSON (the cut is marked, body_status `truncated`).
    max_body_bytes: int = Field(32768, ge=256, le=16 * 1024 * 1024)
    # Captured bodies waiting for the background flush (masking, storing) at most, in MB: past it
    # new records keep no bodies (body_status `dropped`) until the flush catches up.
    body_backlog_mb: float = Field(64.0, gt=0)
    # Usage records (and their bodies) older than this many days are deleted by a background job;
    # None keeps them forever.
    retention_days: float | None = Field(None, gt=0)


class OtlpConfig(Strict):
    # OpenTelemetry traces (GenAI conventions) go to this OTLP/HTTP collector, e.g. http://127.0.0.1:4318
    # (spans are POSTed as protobuf to <endpoint>/v1/traces); unset or empty: tracing is off.
    endpoint: str | None = None
    # The `service.name` resource attribute of every span.
    service_name: str = "fluxway"
    # Extra headers sent with every export (a collector's auth token, say).
    headers: dict[str, str] = Field(default_factory=dict)
    # Spans waiting for export at most; past it new spans are dropped (and counted), serving never waits.
    max_queue: int = Field(4096, ge=1)
    # Spans per export request at most.
    batch_size: int = Field(512, ge=1)
    # Waiting spans are exported at least this often.
    flush_interval_ms: float = Field(1000.0, gt=0)
    # Seconds one export request may take (and the final flush at shutdown).
    timeout_s: float = Field(10.0, gt=0)
    # Share of the calls that start a trace (no sampled `traceparent` from the caller) that are
    # recorded: 1.0 all, 0.1 one in ten. A caller's `traceparent` flags decide for its calls.
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not re.match(r"https?://[^/\s]+", v):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v


class ObservabilityConfig(Strict):
    # GET /metrics (Prometheus text).
    metrics: MetricsConfig = MetricsConfig()
    # Log lines, captured bodies and their retention.
    logs: LogsConfig = LogsConfig()
    # Traces over OTLP/HTTP (off unless `endpoint` is set).
    otlp: OtlpConfig = OtlpConfig()
    # How the `alerts` rules are evaluated (docs/alerts.md).
    alerting: AlertingConfig = AlertingConfig()


class GraphqlConfig(Strict):
    """The read-only GraphQL endpoint over keys, teams, usage and logs (docs/graphql.md)."""

    # Serve /admin/graphql (POST and GET, the admin API's auth); off, it answers 404.
    enabled: bool = True
    # Deepest nesting of fields a query may have (introspection fields are not counted).
    max_depth: int = Field(8, ge=1, le=64)
    # Largest cost a query may have: every field costs 1, and a paginated field's selection costs its
    # page size (`first`) times over.
    max_cost: int = Field(10000, ge=1)
    # Most selections (fields, fragments and their spreads) a query's text may hold.
    max_selections: int = Field(500, ge=1, le=10000)
    # Largest page (`first`) a paginated field may ask for.
    max_page_size: int = Field(500, ge=1, le=1000)
    # The page size of a paginated field that does not give `first`.
    default_page_size: int = Field(50, ge=1, le=1000)
    # Longest query text accepted, in bytes (UTF-8); a longer one is refused before it is parsed.
    max_query_bytes: int = Field(16384, ge=256, le=1024 * 1024)

    @model_validator(mode="after")
    def _default_fits(self) -> GraphqlConfig:
        if self.default_page_size > self.max_page_size:
            raise ValueError(f"default_page_size ({self.default_page_size}) is above max_page_size "
                             f"({self.max_page_size})")
        return self


class AdminConfig(Strict):
    # GraphQL at /admin/graphql.
    graphql: GraphqlConfig = GraphqlConfig()
