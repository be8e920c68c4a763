"""Spans -> an OTLP ``ExportTraceServiceRequest`` with the messages of ``opentelemetry-proto``: the
reference encoding that :mod:`.wire` (what the exporter sends) is tested against, and ``decode``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from fluxway import __version__
from fluxway.tracing.genai import AttrValue
from fluxway.tracing.spans import Span

SCOPE_NAME = "fluxway"
_SAMPLED = 0x01  # W3C trace flags (the low byte of Span.flags): every recorded span is sampled


def _set(value: AnyValue, v: AttrValue) -> None:
    if isinstance(v, bool):
        value.bool_value = v
    elif isinstance(v, int):
        value.int_value = v
    elif isinstance(v, float):
        value.double_value = v
    elif isinstance(v, str):
        value.string_value = v
    else:
        value.array_value.values.extend(AnyValue(string_value=s) for s in v)


def _attributes(target: Any, attrs: Mapping[str, AttrValue]) -> None:
    """Append ``attrs`` to ``target``, a repeated ``KeyValue`` field."""
    add = target.add
    for key, v in attrs.items():
        _set(add(key=key).value, v)


def encode(spans: Iterable[Span], resource: Mapping[str, AttrValue]) -> bytes:
    """One export request holding ``spans`` under one resource and Fluxway's instrumentation scope."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    _attributes(rs.resource.attributes, resource)
    ss = rs.scope_spans.add()
    ss.scope.name = SCOPE_NAME
    ss.scope.version = __version__
    out = ss.spans
    for s in spans:
        p = out.add(
            trace_id=s.trace_id,
            span_id=s.span_id,
            name=s.name,
            kind=s.kind,
            start_time_unix_nano=s.start_ns,
            end_time_unix_nano=s.end_ns,
            flags=_SAMPLED,
        )
        if s.parent_id is not None:
            p.parent_span_id = s.parent_id
        if s.trace_state:
            p.trace_state = s.trace_state
        _attributes(p.attributes, s.attributes)
        if s.status:
            p.status.code = s.status
            if s.status_message:
                p.status.message = s.status_message[:1024]
    data: bytes = req.SerializeToString()
    return data


def decode(body: bytes) -> ExportTraceServiceRequest:
    """The inverse, for receivers (the tests' collector)."""
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    return req
