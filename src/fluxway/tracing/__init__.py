"""OpenTelemetry traces with the GenAI semantic conventions, off unless ``observability.otlp`` names a
collector.

A call is one SERVER span (:class:`~.spans.CallSpan`, a child of the caller's W3C ``traceparent``),
each upstream attempt one CLIENT child (:class:`~.spans.AttemptSpan`) whose context goes to the
upstream in its own ``traceparent``. Spans are plain slotted objects; they are turned into OTLP
protobuf only in the background exporter (:mod:`.exporter`), which batches them off the request
path. With tracing off nothing of this package is imported by the serving path and the runtime holds
no tracer: the hot path pays one ``None`` check per call and per attempt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fluxway.tracing.context import Parent, format_traceparent, parse_traceparent
from fluxway.tracing.spans import AttemptSpan, CallSpan, Span, SpanSink, Tracer

if TYPE_CHECKING:
    from fluxway.config import Config

__all__ = [
    "AttemptSpan",
    "CallSpan",
    "Parent",
    "Span",
    "SpanSink",
    "Tracer",
    "format_traceparent",
    "parse_traceparent",
    "start_tracing",
]


async def start_tracing(cfg: Config) -> Tracer:
    """The runtime's tracer, its exporter started (call only with ``observability.otlp.endpoint`` set)."""
    from fluxway.tracing.exporter import BatchExporter

    exporter = BatchExporter(cfg.observability.otlp)
    await exporter.start()
    otlp = cfg.observability.otlp
    return Tracer(exporter, {p.name: p.type for p in cfg.providers}, sample_ratio=otlp.sample_ratio)
