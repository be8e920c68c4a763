"""Tracing units: W3C trace context, GenAI attributes, the OTLP encoding, the batch exporter's bound
and flush, the attempt spans of hedges and mid-stream failovers (executor on virtual time), and that
a gateway with tracing off never loads the tracing code."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fluxway
from fluxway.canonical import CanonicalRequest, Endpoint, ErrorKind, Target, UpstreamError
from fluxway.config import parse
from fluxway.config_observability import OtlpConfig
from fluxway.tracing import CallSpan, Span, Tracer, format_traceparent, parse_traceparent
from fluxway.tracing.exporter import BatchExporter, traces_url
from fluxway.tracing.genai import request_attributes
from fluxway.tracing.otlp import decode, encode
from fluxway.tracing.spans import KIND_CLIENT, KIND_SERVER
from fluxway.tracing.wire import AttrCache
from fluxway.tracing.wire import encode as wire_encode
from tests.routing.test_executor_unit import MESSAGES, Rig, model, read_all
from tests.support.fake_transport import Answer, Break, Hang
from tests.support.otlp_receiver import otlp_receiver

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class ListSink:
    def __init__(self) -> None:
        self.spans: list[Span] = []

    def submit(self, span: Span) -> None:
        self.spans.append(span)

    def counts(self) -> dict[str, int]:
        return {"exported": len(self.spans)}

    async def close(self) -> None:
        pass


def test_sample_ratio_decides_for_new_traces_and_the_caller_for_its_own() -> None:
    tracer = Tracer(ListSink(), {}, random.Random(3), sample_ratio=0.25)
    started = sum(tracer.start_call({}, Endpoint.CHAT, "openai") is not None for _ in range(400))
    assert 60 < started < 140  # about a quarter (the seed makes it exact run to run)
    # A sampled caller's trace is always recorded, an unsampled one never, whatever the ratio.
    assert all(tracer.start_call({"traceparent": TP}, Endpoint.CHAT, "openai") for _ in range(50))
    unsampled = TP[:-2] + "00"
    assert not any(tracer.start_call({"traceparent": unsampled}, Endpoint.CHAT, "openai") for _ in range(50))
    assert Tracer(ListSink(), {}, random.Random(3), sample_ratio=0.0).start_call({}, Endpoint.CHAT, "openai") is None


# -- trace context ----------------------------------------------------------------------------


def test_a_valid_traceparent_is_read_with_its_tracestate() -> None:
    p = parse_traceparent(TP, "a=1,b=2")
    assert p is not None
    assert p.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736" and p.span_id.hex() == "00f067aa0ba902b7"
    assert p.sampled and p.trace_state == "a=1,b=2"
    assert format_traceparent(p.trace_id, p.span_id) == TP
    unsampled = parse_traceparent(TP[:-2] + "00")
    assert unsampled is not None and not unsampled.sampled


@pytest.mark.parametrize("value", [
    None, "", "garbage", TP + "-extra", "ff" + TP[2:], "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01", "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
])
def test_a_malformed_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_a_later_version_is_read_by_its_first_fields_and_an_oversized_tracestate_dropped() -> None:
    p = parse_traceparent("01" + TP[2:] + "-future", "x" * 600)
    assert p is not None and p.sampled and p.trace_state == ""


def test_request_attributes_take_only_well_typed_values() -> None:
    out: dict[str, Any] = {}
    request_attributes({"max_tokens": True, "temperature": "hot", "top_p": 0.5, "stop": ["a", 1], "n": 2}, out)
    assert out == {"gen_ai.request.top_p": 0.5, "gen_ai.request.choice.count": 2}
    out = {}
    request_attributes({"max_completion_tokens": 7, "max_tokens": 9, "stop": "END", "seed": 3}, out)
    assert out == {"gen_ai.request.max_tokens": 7, "gen_ai.request.stop_sequences": ("END",),
                   "gen_ai.request.seed": 3}


# -- encoding and export ----------------------------------------------------------------------


def _call_span(sink: ListSink, headers: dict[str, str] | None = None) -> CallSpan:
    tracer = Tracer(sink, {"up": "gemini"}, random.Random(1))
    span = tracer.start_call(headers or {}, Endpoint.CHAT, "openai")
    assert span is not None
    span.request(CanonicalRequest(Endpoint.CHAT, "smart", {"messages": MESSAGES}), "r1")
    return span


def test_spans_encode_to_an_otlp_request_with_every_attribute_type() -> None:
    sink = ListSink()
    span = _call_span(sink, {"traceparent": TP, "tracestate": "v=1"})
    span.attributes.update({"b": True, "i": 3, "f": 0.5, "s": "x", "a": ("p", "q")})
    span.error("timeout", "too slow")
    span.finish(None)
    (got,) = sink.spans
    req = decode(encode(sink.spans, {"service.name": "svc"}))
    (rs,) = req.resource_spans
    assert {kv.key: kv.value.string_value for kv in rs.resource.attributes} == {"service.name": "svc"}
    (pb,) = rs.scope_spans[0].spans
    assert pb.trace_id == got.trace_id and pb.span_id == got.span_id and pb.parent_span_id.hex() == "00f067aa0ba902b7"
    assert pb.name == "chat smart" and pb.kind == KIND_SERVER and pb.trace_state == "v=1"
    assert pb.end_time_unix_nano >= pb.start_time_unix_nano > 0
    attrs = {kv.key: kv.value for kv in pb.attributes}
    assert attrs["b"].bool_value is True and attrs["i"].int_value == 3 and attrs["f"].double_value == 0.5
    assert [v.string_value for v in attrs["a"].array_value.values] == ["p", "q"]
    assert attrs["error.type"].string_value == "timeout"
    assert pb.status.code == 2 and pb.status.message == "too slow"


def test_the_wire_encoder_writes_what_the_reference_messages_do() -> None:
    sink = ListSink()
    for headers in ({"traceparent": TP, "tracestate": "v=1"}, {}):
        span = _call_span(sink, headers)
        attempt = span.attempt(Target("up", "m"), 1, hedge=True)
        attempt.attributes.update({"neg": -5, "big": 2**40, "f": 1.5, "a": ("x", "yz"), "off": False})
        attempt.fail(UpstreamError(ErrorKind.TIMEOUT, "slow é", status=504))
        attempt.leave()
        span.finish(None)
    resource = {"service.name": "svc", "n": 2}
    cache = AttrCache()
    for _ in range(2):  # the second time from the cache
        got = wire_encode(sink.spans, resource, ("fluxway", fluxway.__version__), cache)
        assert decode(got) == decode(encode(sink.spans, resource))


def test_traces_url_appends_the_signal_path_once() -> None:
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_otlp_config_needs_an_http_url_and_empty_means_off() -> None:
    assert parse({"observability": {"otlp": {"endpoint": ""}}}).observability.otlp.endpoint is None
    with pytest.raises(Exception, match=r"otlp\.endpoint"):
        parse({"observability": {"otlp": {"endpoint": "grpc://c:4317"}}})


async def test_a_full_queue_drops_and_counts_and_close_flushes_the_rest() -> None:
    async with otlp_receiver() as rec:
        exp = BatchExporter(OtlpConfig(endpoint=rec.url, max_queue=3, batch_size=2, flush_interval_ms=60_000))
        await exp.start()
        sink = ListSink()
        spans = []
        for _ in range(5):
            s = _call_span(sink)
            s.finish(None)
            spans.append(s)
        for s in spans:
            exp.submit(s)
        assert exp.dropped == 2 and exp.queued <= 3
        await exp.close()
        assert exp.exported == 3 and exp.failed == 0 and exp.queued == 0
        assert sorted(r.span_id for r in rec.spans) == sorted(s.span_id.hex() for s in spans[:3])


async def test_an_unreachable_collector_is_counted_never_raised() -> None:
    async with otlp_receiver() as rec:
        url = rec.url
    exp = BatchExporter(OtlpConfig(endpoint=url, timeout_s=2, flush_interval_ms=10))
    await exp.start()
    span = _call_span(ListSink())
    span.finish(None)
    exp.submit(span)
    for _ in range(200):
        if exp.failed:
            break
        await asyncio.sleep(0.01)
    await exp.close()
    assert exp.failed == 1 and exp.exported == 0


# -- attempt spans in the executor ------------------------------------------------------------


def _attempts(sink: ListSink) -> list[Span]:
    return sorted((s for s in sink.spans if s.kind == KIND_CLIENT), key=lambda s: s.attributes["fluxway.attempt"])


async def test_a_hedge_and_its_cancelled_loser_are_marked() -> None:
    rig = Rig([model("m", "a/x", "b/y", hedge={"after_ms": 100})])
    rig.fake.script("a/x", Answer("slow", latency=5))
    rig.fake.script("b/y", Answer("hedge", latency=0.2))
    sink = ListSink()
    span = _call_span(sink)
    req = CanonicalRequest(Endpoint.CHAT, "m", {"model": "m", "messages": MESSAGES})
    done = await rig.ex.complete(req, rig.ex.resolve("m"), span=span)
    assert done.target.key == "b/y"
    first, hedge = _attempts(sink)
    assert first.attributes["fluxway.cancelled"] is True and "fluxway.hedge" not in first.attributes
    assert hedge.attributes["fluxway.hedge"] is True and "fluxway.cancelled" not in hedge.attributes
    assert hedge.attributes["http.response.status_code"] == 200
    assert first.attributes["server.address"] == "a.test" and hedge.attributes["server.address"] == "b.test"
    assert span.answer is hedge


async def test_a_hedged_stream_loser_that_opened_is_cancelled() -> None:
    rig = Rig([model("m", "a/x", "b/y", hedge={"after_ms": 250})])
    rig.fake.script("a/x", Hang())
    rig.fake.script("b/y", Answer("streamed by b"))
    sink = ListSink()
    span = _call_span(sink)
    req = CanonicalRequest(Endpoint.CHAT, "m", {"model": "m", "messages": MESSAGES, "stream": True}, stream=True)
    rs = await rig.ex.open_stream(req, rig.ex.resolve("m"), span=span)
    assert await read_all(rs) == "streamed by b"
    first, hedge = _attempts(sink)
    assert first.attributes.get("fluxway.cancelled") is True and first.ended
    assert hedge.attributes["fluxway.hedge"] is True and hedge.ended and span.answer is hedge


async def test_a_mid_stream_failover_attempt_is_marked_and_the_broken_leg_failed() -> None:
    rig = Rig([model("m", "a/x", "b/y", stream_failover=True)], providers={"b": {"continuation": "prefix"}})
    rig.fake.script("a/x", Break(("Once upon ", "a time ")))
    rig.fake.script("b/y", Answer("there was a gateway."))
    sink = ListSink()
    span = _call_span(sink)
    req = CanonicalRequest(Endpoint.CHAT, "m", {"model": "m", "messages": MESSAGES, "stream": True,
                                                "max_tokens": 100}, stream=True)
    rs = await rig.ex.open_stream(req, rig.ex.resolve("m"), span=span)
    assert await read_all(rs) == "Once upon a time there was a gateway."
    broken, continued = _attempts(sink)
    assert broken.attributes["error.type"] == "upstream_5xx" and broken.status == 2
    assert "fluxway.failover" not in broken.attributes
    assert continued.attributes["fluxway.failover"] is True and continued.status == 0
    assert continued.attributes["gen_ai.response.finish_reasons"] == ("stop",)


async def test_a_stream_the_caller_left_ends_its_attempt_span_cancelled() -> None:
    rig = Rig([model("m", "a/x")])
    rig.fake.script("a/x", Answer("a b c d"))
    sink = ListSink()
    span = _call_span(sink)
    req = CanonicalRequest(Endpoint.CHAT, "m", {"model": "m", "messages": MESSAGES, "stream": True}, stream=True)
    rs = await rig.ex.open_stream(req, rig.ex.resolve("m"), span=span)
    rs.close()
    (attempt,) = _attempts(sink)
    assert attempt.ended and attempt.attributes["fluxway.cancelled"] is True


# -- off ----------------------------------------------------------------------------------------

_SERVE_ONE_CALL = """
import asyncio, sys
TRACEPARENT = "TP"
from tests.support.gateway import run_gateway
from tests.support.openai_upstream import config, openai_upstream
import aiohttp

async def main():
    async with openai_upstream() as up, run_gateway(config(up.url)) as gw:
        async with aiohttp.ClientSession() as s:
            r = await s.post(gw.url + "/v1/chat/completions", headers={"traceparent": TRACEPARENT},
                             json={"model": "smart", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status == 200, await r.text()
        assert gw.runtime.tracer is None
    print(sorted(m for m in sys.modules if m.startswith(("fluxway.tracing", "opentelemetry.proto", "google.protobuf"))))

asyncio.run(main())
""".replace('"TP"', repr(TP))


def test_with_tracing_off_serving_a_call_loads_no_tracing_code() -> None:
    root = Path(__file__).resolve().parent.parent
    src = str(Path(fluxway.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(root)])}
    proc = subprocess.run([sys.executable, "-c", _SERVE_ONE_CALL], capture_output=True, text=True, env=env,
                          timeout=120, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
