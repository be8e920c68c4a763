"""Every error of SPEC §4 through HTTP, in the OpenAI error shape, via the openai SDK and raw HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.support.gateway import run_gateway
from tests.support.openai_bodies import error, sse_frame
from tests.support.openai_upstream import COMPLETION, config, openai_upstream
from tests.support.ports import free_port
from tests.support.replies import delayed, replying
from tests.support.upstream import FakeUpstream


async def post(url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as http:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with http.post(url, headers=headers, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers


def assert_openai_error(body: Any, param: str | None = None, code: str | None = None) -> None:
    assert set(body) == {"error"}
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code


@pytest.fixture
async def gw() -> Any:
    async with openai_upstream() as up, run_gateway(config(up.url, server={"max_body_bytes": 4096})) as gateway:
        yield gateway


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"[1, 2]", 400, None),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
        ({"model": "smart"}, 400, "messages"),
        ({"model": 42, "messages": []}, 400, "model"),
        ({"model": "smart", "messages": "hello"}, 400, "messages"),
        ({"model": "smart", "messages": []}, 400, "messages"),
        ({"model": "smart", "messages": [{"content": "x"}]}, 400, "messages[0].role"),
        ({"model": "smart", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
        ({"model": "smart", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
        ({"model": "smart", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400, "temperature"),
        ({"model": "smart", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}, 400, "max_tokens"),
        ({"model": "smart", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream"),
        ({"model": "smart", "messages": [{"role": "user", "content": "x"}], "n": True}, 400, "n"),
        ({"model": "smart", "messages": [{"role": "user", "content": "x"}], "stop": [1]}, 400, "stop"),
        ({"model": "gpt-5x", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ],
)
async def test_bad_input_is_a_clear_client_error(gw: Any, body: Any, status: int, param: str | None) -> None:
    code, data, headers = await post(gw.url + "/v1/chat/completions", body)
    assert code == status
    assert_openai_error(data, param=param)
    assert headers["x-request-id"]


async def test_unknown_model_lists_known(gw: Any) -> None:
    body = {"model": "gpt-5x", "messages": [{"role": "user", "content": "x"}]}
    code, data, _ = await post(gw.url + "/v1/chat/completions", body)
    assert code == 404
    assert data["error"]["message"] == "model 'gpt-5x' is not configured; known: smart"
    assert data["error"]["code"] == "model_not_found"


async def test_body_over_limit_is_413(gw: Any) -> None:
    big = {"model": "smart", "messages": [{"role": "user", "content": "x" * 10000}]}
    code, data, _ = await post(gw.url + "/v1/chat/completions", big)
    assert code == 413
    assert_openai_error(data, code="request_too_large")


async def test_embeddings_and_completions_fields(gw: Any) -> None:
    code, data, _ = await post(gw.url + "/v1/embeddings", {"model": "smart"})
    assert (code, data["error"]["param"]) == (400, "input")
    code, data, _ = await post(gw.url + "/v1/completions", {"model": "smart"})
    assert (code, data["error"]["param"]) == (400, "prompt")


async def test_unknown_route_and_method(gw: Any) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url + "/v1/nothing") as resp:
            assert resp.status == 404
            assert_openai_error(await resp.json())
        async with http.get(gw.url + "/v1/chat/completions") as resp:
            assert resp.status == 405


async def _single_upstream_status(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[Any, Any]:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", replying(body, status, headers))
        cfg = config(up.url)
        cfg["models"][0]["retry"] = {"attempts": 1}
        async with run_gateway(cfg) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            try:
                await client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
            except openai.APIStatusError as exc:
                return exc, up.requests
    raise AssertionError("expected an error")


async def test_upstream_400_passed_back_with_its_message() -> None:
    exc, _ = await _single_upstream_status(
        400,
        {
            "error": {
                "message": "Invalid value for 'temperature'",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": None,
            }
        },
    )
    assert isinstance(exc, openai.BadRequestError)
    assert "Invalid value for 'temperature'" in exc.message
    assert exc.body["param"] == "temperature"  # type: ignore[index]


async def test_upstream_500_becomes_502_naming_target() -> None:
    exc, requests = await _single_upstream_status(500, error("boom"))
    assert exc.status_code == 502
    assert "up/gpt-4o-mini" in exc.message and "boom" in exc.message
    assert len(requests) == 1


async def test_upstream_429_passed_as_429_with_retry_after() -> None:
    exc, _ = await _single_upstream_status(429, {"error": {"message": "slow down"}}, {"retry-after": "7"})
    assert isinstance(exc, openai.RateLimitError)
    assert exc.response.headers["retry-after"] == "7"


async def test_connection_refused_is_502_naming_target() -> None:
    port = free_port()
    cfg = config(f"http://127.0.0.1:{port}")
    async with run_gateway(cfg) as gw:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == 502
        assert "up/gpt-4o-mini" in info.value.message and "connect" in info.value.message


async def test_upstream_timeout_is_504() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", delayed(10, replying(COMPLETION)))
        cfg = config(up.url)
        cfg["providers"][0]["timeout"] = {"connect": 1, "first_token": 0.3, "total": 0.5}
        cfg["models"][0]["retry"] = {"attempts": 1}
        async with run_gateway(cfg) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIStatusError) as info:
                await client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
            assert info.value.status_code == 504
            assert "timed out" in info.value.message


async def test_malformed_upstream_stream_event_becomes_error_event() -> None:
    async def garbage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        first = {"id": "1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "ok"}}]}
        await resp.write(sse_frame(first))
        await asyncio.sleep(0.1)
        await resp.write(b"data: {this is not json\n\n")
        await asyncio.sleep(5)  # a hang after garbage must not hang the client
        return resp

    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", garbage)
        async with run_gateway(config(up.url)) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            stream = await client.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "x"}], stream=True
            )
            got = ""
            with pytest.raises(openai.APIError) as info:
                async with asyncio.timeout(3):
                    async for c in stream:
                        got += c.choices[0].delta.content or ""
            assert got == "ok"
            assert "malformed" in str(info.value)


async def test_master_key_required_when_set() -> None:
    async with openai_upstream() as up:
        async with run_gateway(config(up.url, auth={"master_key": "sk-master"})) as gw:
            bad = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-wrong", max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()
            code, _, _ = await post(gw.url + "/v1/chat/completions", {"model": "smart", "messages": []})
            assert code == 401
            good = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-master")
            resp = await good.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
            assert resp.choices[0].message.content == "Hello there!"
        # The master key is never forwarded upstream.
        assert {r.headers["authorization"] for r in up.requests} <= {"Bearer sk-a", "Bearer sk-b"}
