"""A minimal OpenTelemetry collector for tests: an aiohttp server taking OTLP/HTTP protobuf on
``POST /v1/traces`` and keeping every span it decodes (with ``opentelemetry-proto``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    trace_state: str
    resource: dict[str, Any]


@dataclass
class Receiver:
    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    content_types: list[str] = field(default_factory=list)

    def by_kind(self, kind: int) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.kind == kind]


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def traces(request: web.Request) -> web.Response:
        rec.requests += 1
        rec.content_types.append(request.headers.get("content-type", ""))
        req = ExportTraceServiceRequest()
        req.ParseFromString(await request.read())
        for rs in req.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    rec.spans.append(ReceivedSpan(
                        s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name, s.kind,
                        s.start_time_unix_nano, s.end_time_unix_nano,
                        {kv.key: _value(kv.value) for kv in s.attributes},
                        s.status.code, s.status.message, s.trace_state, resource,
                    ))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    rec.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield rec
    finally:
        await runner.cleanup()
