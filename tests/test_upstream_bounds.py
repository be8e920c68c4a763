"""Bounded upstream buffering (issue 9 #9), through HTTP with a hostile mock upstream.

An upstream that sends one SSE event without a newline (100 MB in the probe), a whole body larger
than ``max_response_bytes``, or a Bedrock event-stream frame larger than ``max_event_bytes`` fails
that call with a 502 (or, once the stream has started, an error event in the caller's shape). The
bound is asserted on what the upstream managed to send before the gateway hung up: a gateway that
buffered without limit reads all of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from fluxway.adapters.eventstream import encode_event
from tests.support.gateway import run_gateway
from tests.support.openai_bodies import chunk, sse_frame
from tests.support.replies import streaming
from tests.support.upstream import FakeUpstream

HI = [{"role": "user", "content": "Hi"}]
MiB = 1024 * 1024
ROLE = chunk({"role": "assistant", "content": "Hel"}, id="c1", model="m", created=1)


class Hostile:
    """Streams ``total`` bytes of one never-ending SSE event; counts what it got to send."""

    def __init__(self, total: int, *, started: bool = False, piece: int = 64 * 1024) -> None:
        self.total = total
        self.started = started
        self.piece = b"x" * piece
        self.sent: list[int] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        sent = 0
        try:
            if self.started:
                await resp.write(sse_frame(ROLE))
            await resp.write(b'data: {"id": "c1", "choices": [{"delta": {"content": "')
            while sent < self.total:
                await resp.write(self.piece)
                sent += len(self.piece)
            await resp.write(b'"}}]}\n\ndata: [DONE]\n\n')
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.sent.append(sent)
        return resp


def config(url: str, **provider: Any) -> dict[str, Any]:
    return {
        "providers": [{"name": "up", "type": "openai", "base_url": url + "/v1", "api_keys": ["sk-up"], **provider}],
        "models": [{"name": "m", "targets": [{"provider": "up", "model": "gpt-4o-mini"}], "retry": {"attempts": 1}}],
    }


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as server:
        yield server


async def post_raw(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/chat/completions", json=body) as r:
        return r.status, await r.read()


async def test_100_mb_event_without_a_newline_is_a_502_and_is_not_buffered(up: FakeUpstream) -> None:
    hostile = Hostile(100 * MiB)
    up.route("POST", "/v1/chat/completions", hostile.handle)
    async with run_gateway(config(up.url)) as gw:  # default max_event_bytes: 8 MiB
        status, raw = await asyncio.wait_for(post_raw(gw.url, {"model": "m", "messages": HI, "stream": True}), 60)
        assert status == 502, raw[:300]
        err = orjson.loads(raw)["error"]
        assert "max_event_bytes" in err["message"] and err["type"] == "server_error"
        # Others are still served at once.
        fine = Hostile(0)
        up.route("POST", "/v1/chat/completions", fine.handle)
    await asyncio.sleep(0.2)
    # The gateway hung up after about max_event_bytes (plus socket buffers), not after 100 MB.
    assert len(hostile.sent) == 1 and hostile.sent[0] < 24 * MiB, hostile.sent


async def test_an_event_over_the_bound_after_the_stream_started_is_an_error_event(up: FakeUpstream) -> None:
    hostile = Hostile(10 * MiB, started=True)
    up.route("POST", "/v1/chat/completions", hostile.handle)
    async with run_gateway(config(up.url, max_event_bytes=64 * 1024)) as gw:
        status, raw = await asyncio.wait_for(post_raw(gw.url, {"model": "m", "messages": HI, "stream": True}), 30)
    assert status == 200
    events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert orjson.loads(events[0])["choices"][0]["delta"]["content"] == "Hel"
    err = orjson.loads(events[-1])["error"]
    assert "max_event_bytes" in err["message"]
    await asyncio.sleep(0.2)
    assert hostile.sent[0] < 8 * MiB, hostile.sent


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_whole_body_over_max_response_bytes_is_a_502(up: FakeUpstream, chunked: bool) -> None:
    big = b'{"id": "' + b"x" * (3 * MiB) + b'"}'
    sent: list[int] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "application/json"})
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(big)
        await resp.prepare(request)
        n = 0
        try:
            for i in range(0, len(big), 64 * 1024):
                await resp.write(big[i : i + 64 * 1024])
                n += 64 * 1024
        except (ConnectionError, asyncio.CancelledError):
            pass
        sent.append(n)
        return resp

    up.route("POST", "/v1/chat/completions", handle)
    async with run_gateway(config(up.url, max_response_bytes=MiB)) as gw:
        status, raw = await post_raw(gw.url, {"model": "m", "messages": HI})
        assert status == 502, raw[:300]
        assert "max_response_bytes" in orjson.loads(raw)["error"]["message"]
        # An error answer (read whole before classifying) is bounded the same way.
        up.route("POST", "/v1/chat/completions", handle)


async def test_a_bedrock_frame_over_max_event_bytes_is_a_502() -> None:
    frame = encode_event("contentBlockDelta", orjson.dumps({"delta": {"text": "x" * (256 * 1024)}}))

    handle = streaming([frame], content_type="application/vnd.amazon.eventstream")
    async with FakeUpstream() as up:
        up.route("POST", "/model/anthropic.claude-v2%3A1/converse-stream", handle)
        up.route("POST", "/model/anthropic.claude-v2:1/converse-stream", handle)
        cfg = {
            "providers": [{"name": "br", "type": "bedrock", "base_url": up.url, "region": "us-east-1",
                           "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "s",
                           "max_event_bytes": 64 * 1024}],
            "models": [{"name": "m", "targets": [{"provider": "br", "model": "anthropic.claude-v2:1"}],
                        "retry": {"attempts": 1}}],
        }
        async with run_gateway(cfg) as gw:
            status, raw = await post_raw(gw.url, {"model": "m", "messages": HI, "stream": True})
        assert status == 502, raw[:300]
        assert "max_event_bytes" in orjson.loads(raw)["error"]["message"]
