"""End to end: a call that fails over, traced to a real OTLP/HTTP receiver (protobuf decoded with
opentelemetry-proto), the caller's traceparent joined and passed on to the upstreams."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import run_gateway
from tests.support.openai_bodies import error
from tests.support.openai_upstream import openai_upstream
from tests.support.otlp_receiver import otlp_receiver
from tests.support.replies import replying
from tests.support.upstream import FakeUpstream

SERVER, CLIENT = 2, 3
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _config(bad: str, good: str, otlp: str | None, sample_ratio: float = 1.0, **model: Any) -> dict[str, Any]:
    observability: dict[str, Any] = {}
    if otlp is not None:
        observability = {"otlp": {"endpoint": otlp, "service_name": "fluxway-test", "flush_interval_ms": 50,
                                  "sample_ratio": sample_ratio}}
    return {
        "providers": [
            {"name": "bad", "type": "openai", "base_url": bad + "/v1", "api_keys": ["sk-bad"]},
            {"name": "good", "type": "openai", "base_url": good + "/v1", "api_keys": ["sk-good"]},
        ],
        "models": [{
            "name": "smart",
            "targets": [{"provider": "bad", "model": "gpt-4o"}, {"provider": "good", "model": "gpt-4o-mini"}],
            "retry": {"attempts": 1},
            **model,
        }],
        "observability": observability,
    }


async def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        return r.status, await r.read()


@pytest.mark.parametrize("stream", [False, True])
async def test_failed_over_call_is_one_server_span_with_two_attempt_children(stream: bool) -> None:
    async with (
        otlp_receiver() as rec,
        FakeUpstream(replying(error("boom"), 500)) as bad,
        openai_upstream() as good,
        run_gateway(_config(bad.url, good.url, rec.url)) as gw,
    ):
        body: dict[str, Any] = {
            "model": "smart", "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 50, "temperature": 0.3,
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        status, answer = await _post(
            gw.url, body, {"traceparent": TRACEPARENT, "tracestate": "vendor=abc", "x-request-id": "req-1"}
        )
        assert status == 200, answer
        assert gw.runtime.tracer is not None
    # The gateway has shut down (before the receiver): its exporter flushed every span.
    servers, clients = rec.by_kind(SERVER), rec.by_kind(CLIENT)
    assert len(servers) == 1 and len(clients) == 2, rec.spans
    call = servers[0]
    assert call.trace_id == TRACE_ID and call.parent_span_id == PARENT_ID
    assert call.trace_state == "vendor=abc"
    assert call.name == "chat smart"
    assert call.resource["service.name"] == "fluxway-test"
    a = call.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "smart"
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.temperature"] == pytest.approx(0.3)
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.input_tokens"] == 9 and a["gen_ai.usage.output_tokens"] == 3
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.system"] == "openai"
    assert a["http.response.status_code"] == 200
    assert a["fluxway.attempts"] == 2 and a["fluxway.request_id"] == "req-1"
    assert "error.type" not in a and call.status_code == 0

    first, second = sorted(clients, key=lambda s: s.attributes["fluxway.attempt"])
    for span in (first, second):
        assert span.trace_id == TRACE_ID and span.parent_span_id == call.span_id
        assert call.start_ns <= span.start_ns <= span.end_ns <= call.end_ns
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["gen_ai.operation.name"] == "chat"
    assert first.name == "chat gpt-4o" and first.attributes["fluxway.provider"] == "bad"
    assert first.attributes["error.type"] == "upstream_5xx"
    assert first.attributes["http.response.status_code"] == 500
    assert first.status_code == 2 and "boom" in first.status_message
    assert second.name == "chat gpt-4o-mini" and second.attributes["fluxway.provider"] == "good"
    assert second.attributes["http.response.status_code"] == 200
    assert second.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert second.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert second.attributes["gen_ai.usage.input_tokens"] == 9
    assert second.attributes["gen_ai.usage.output_tokens"] == 3
    assert second.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert "error.type" not in second.attributes and second.status_code == 0
    assert second.attributes["server.port"] == good.port

    # Each upstream saw the traceparent of its own attempt span (and the caller's tracestate).
    (sent_bad,) = bad.requests
    (sent_good,) = good.requests
    assert sent_bad.headers["traceparent"] == f"00-{TRACE_ID}-{first.span_id}-01"
    assert sent_good.headers["traceparent"] == f"00-{TRACE_ID}-{second.span_id}-01"
    assert sent_good.headers["tracestate"] == "vendor=abc"
    assert rec.content_types and all(ct == "application/x-protobuf" for ct in rec.content_types)


async def test_without_a_traceparent_a_new_trace_starts() -> None:
    async with (
        otlp_receiver() as rec,
        openai_upstream() as good,
        run_gateway(_config(good.url, good.url, rec.url)) as gw,
    ):
        status, _ = await _post(gw.url, {"model": "smart", "messages": [{"role": "user", "content": "Hi"}]}, {})
        assert status == 200
    (call,) = rec.by_kind(SERVER)
    (attempt,) = rec.by_kind(CLIENT)
    assert call.parent_span_id == "" and len(call.trace_id) == 32 and call.trace_id != "0" * 32
    assert attempt.trace_id == call.trace_id and attempt.parent_span_id == call.span_id
    assert good.requests[0].headers["traceparent"] == f"00-{call.trace_id}-{attempt.span_id}-01"


async def test_an_unsampled_caller_trace_records_nothing() -> None:
    async with (
        otlp_receiver() as rec,
        openai_upstream() as good,
        run_gateway(_config(good.url, good.url, rec.url)) as gw,
    ):
        status, _ = await _post(gw.url, {"model": "smart", "messages": [{"role": "user", "content": "Hi"}]},
                                {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
        assert status == 200
    assert rec.spans == []
    assert "traceparent" not in good.requests[0].headers


async def test_sample_ratio_zero_records_only_the_callers_sampled_traces_and_metrics_count_them() -> None:
    hi = {"model": "smart", "messages": [{"role": "user", "content": "Hi"}]}
    async with (
        otlp_receiver() as rec,
        openai_upstream() as good,
        run_gateway(_config(good.url, good.url, rec.url, sample_ratio=0.0)) as gw,
    ):
        for _ in range(3):
            assert (await _post(gw.url, hi, {}))[0] == 200  # would start a trace: not sampled
        assert (await _post(gw.url, hi, {"traceparent": TRACEPARENT}))[0] == 200
        for _ in range(100):
            if len(rec.spans) >= 2:
                break
            await asyncio.sleep(0.02)
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
            metrics = await r.text()
    (call,) = rec.by_kind(SERVER)
    assert call.trace_id == TRACE_ID and len(rec.by_kind(CLIENT)) == 1
    assert 'fluxway_trace_spans_total{outcome="exported"} 2' in metrics
    assert 'fluxway_trace_spans_total{outcome="dropped"} 0' in metrics


async def test_a_call_every_target_fails_is_an_error_span() -> None:
    async with (
        otlp_receiver() as rec,
        FakeUpstream(replying(error("boom"), 500)) as bad,
        run_gateway(_config(bad.url, bad.url, rec.url)) as gw,
    ):
        status, _ = await _post(gw.url, {"model": "smart", "messages": [{"role": "user", "content": "Hi"}]},
                                {"traceparent": TRACEPARENT})
        assert status == 502
    (call,) = rec.by_kind(SERVER)
    assert call.status_code == 2 and call.attributes["error.type"] == "upstream_error"
    assert call.attributes["http.response.status_code"] == 502
    assert len(rec.by_kind(CLIENT)) == 2


async def test_tracing_off_creates_no_tracing_objects() -> None:
    async with (
        FakeUpstream(replying(error("boom"), 500)) as bad,
        openai_upstream() as good,
        run_gateway(_config(bad.url, good.url, None)) as gw,
    ):
        status, _ = await _post(gw.url, {"model": "smart", "messages": [{"role": "user", "content": "Hi"}]},
                                {"traceparent": TRACEPARENT})
        assert status == 200
        assert gw.runtime.tracer is None
        assert not any(t.get_name() == "fluxway-otlp-export" for t in asyncio.all_tasks())
    # The caller's traceparent is not passed on by a gateway that does not trace.
    assert all("traceparent" not in r.headers for r in (*bad.requests, *good.requests))
