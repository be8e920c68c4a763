"""End to end: the official openai SDK -> the gateway -> a local OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.support.gateway import run_gateway
from tests.support.openai_bodies import chunk, completion, embeddings, sse_frame, text_completion
from tests.support.openai_upstream import IDS, config, openai_upstream
from tests.support.replies import json_reply, replying
from tests.support.upstream import FakeUpstream


@pytest.fixture
async def upstream() -> Any:
    async with openai_upstream() as up:
        yield up


async def test_chat_json(upstream: FakeUpstream) -> None:
    async with run_gateway(config(upstream.url)) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
        raw = await client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": "Hi"}], temperature=0.2
        )
        resp = raw.parse()
        assert resp.choices[0].message.content == "Hello there!"
        assert resp.usage is not None and resp.usage.total_tokens == 12
        assert raw.headers["x-fluxway-provider"] == "up"
        assert raw.headers["x-fluxway-model"] == "gpt-4o-mini"
        assert raw.headers["x-fluxway-attempts"] == "1"
        assert raw.headers["x-fluxway-cache"] == "miss"
        assert float(raw.headers["x-fluxway-overhead-ms"]) >= 0
        assert len(raw.headers["x-request-id"]) >= 16
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json() == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.2}
    assert sent.headers["authorization"] == "Bearer sk-a"


async def test_keys_rotate(upstream: FakeUpstream) -> None:
    async with run_gateway(config(upstream.url)) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
        for _ in range(4):
            await client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "Hi"}])
    keys = [r.headers["authorization"] for r in upstream.requests]
    assert keys == ["Bearer sk-a", "Bearer sk-b", "Bearer sk-a", "Bearer sk-b"]


async def test_chat_stream_collects_same_text(upstream: FakeUpstream) -> None:
    async with run_gateway(config(upstream.url)) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
        stream = await client.chat.completions.create(
            model="smart",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text = ""
        usage = None
        async for c in stream:
            if c.choices:
                text += c.choices[0].delta.content or ""
            if c.usage:
                usage = c.usage
        assert text == "Hello there!"
        assert usage is not None and usage.completion_tokens == 3


async def test_stream_without_include_usage_hides_usage_chunk(upstream: FakeUpstream) -> None:
    async with run_gateway(config(upstream.url)) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
        stream = await client.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        chunks = [c async for c in stream]
        assert all(c.choices for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello there!"
    # The gateway asked the upstream for usage anyway, to record it.
    assert upstream.requests[-1].json()["stream_options"] == {"include_usage": True}


async def test_direct_provider_addressing(upstream: FakeUpstream) -> None:
    async with run_gateway(config(upstream.url)) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
        raw = await client.chat.completions.with_raw_response.create(
            model="up/gpt-4.1-nano", messages=[{"role": "user", "content": "Hi"}]
        )
        assert raw.headers["x-fluxway-model"] == "gpt-4.1-nano"
    assert upstream.requests[-1].json()["model"] == "gpt-4.1-nano"


async def test_tools_and_multimodal_pass_through(upstream: FakeUpstream) -> None:
    call = {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    tool_reply = completion(None, finish="tool_calls", tool_calls=[call], **IDS)
    upstream.route("POST", "/v1/chat/completions", replying(tool_reply))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    messages: list[Any] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]
    async with run_gateway(config(upstream.url)) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
        resp = await client.chat.completions.create(
            model="smart",
            messages=messages,
            tools=tools,  # type: ignore[arg-type]
            tool_choice="auto",
            response_format={"type": "json_object"},
        )
        call = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        assert resp.choices[0].finish_reason == "tool_calls"
    sent = upstream.requests[-1].json()
    assert sent["tools"] == tools
    assert sent["messages"] == messages
    assert sent["response_format"] == {"type": "json_object"}


async def test_embeddings_and_models() -> None:
    async def embed(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        n = 1 if isinstance(body["input"], str) else len(body["input"])
        return json_reply(embeddings(n, [0.1, 0.2, 0.3], model=body["model"]))

    async with FakeUpstream() as up:
        up.route("POST", "/v1/embeddings", embed)
        cfg = config(up.url)
        cfg["models"].append({"name": "embed", "targets": [{"provider": "up", "model": "text-embedding-3-small"}]})
        async with run_gateway(cfg) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
            resp = await client.embeddings.create(model="embed", input=["a", "b"])
            assert [d.embedding for d in resp.data] == [[0.1, 0.2, 0.3]] * 2
            models = await client.models.list()
            assert sorted(m.id for m in models.data) == ["embed", "smart"]
        assert up.requests[-1].json()["model"] == "text-embedding-3-small"


async def test_legacy_completions() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/completions", replying(text_completion(" world")))
        async with run_gateway(config(up.url)) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused")
            resp = await client.completions.create(model="smart", prompt="hello")
            assert resp.choices[0].text == " world"


async def test_client_disconnect_cancels_upstream() -> None:
    closed = asyncio.Event()

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        try:
            await resp.write(sse_frame(chunk({"content": "x"}, **IDS)))
            for _ in range(200):
                await asyncio.sleep(0.05)
                await resp.write(sse_frame(chunk({"content": "y"}, **IDS)))
        except (ConnectionResetError, asyncio.CancelledError):
            closed.set()
            raise
        return resp

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", slow_stream)
        async with run_gateway(config(up.url)) as gw:
            async with aiohttp.ClientSession() as http, http.post(
                gw.url + "/v1/chat/completions",
                json={"model": "smart", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
            ) as resp:
                assert resp.status == 200
                async for line in resp.content:
                    if line.startswith(b"data:"):
                        break
            # The client has gone; the upstream must see its connection dropped soon.
            await asyncio.wait_for(closed.wait(), 5)
            assert gw.runtime.in_flight == 0
