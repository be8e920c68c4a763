"""Resilience end to end: the openai SDK -> the gateway -> two fault-injecting upstreams (issue 4).

First the fault injector itself is checked against a plain aiohttp client (each mode must really
fail the way it says, or the scenarios below would prove nothing); then every fault mode on provider
A under concurrent load, with B healthy, must be invisible to the client.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from tests.support.faults import FaultyUpstream

CHAT = {"model": "x", "messages": [{"role": "user", "content": "Hi"}]}


async def _post(up: FaultyUpstream, stream: bool = False, timeout: float = 0.5) -> tuple[int, bytes]:
    body = {**CHAT, "stream": stream}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
        http.post(up.url + "/v1/chat/completions", json=body) as resp,
    ):
        return resp.status, await resp.read()


# -- the fault injector ---------------------------------------------------------------------------


async def test_ok_answers_json_and_sse() -> None:
    async with FaultyUpstream("a") as up:
        status, body = await _post(up)
        assert status == 200
        assert orjson.loads(body)["choices"][0]["message"]["content"] == "Hello from a"
        status, body = await _post(up, stream=True)
        assert status == 200
        events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
        assert events[-1] == b"[DONE]"
        text = "".join(orjson.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-2])
        assert text == "Hello from a"
    assert up.outcomes == {"ok": 2}
    assert up.requests[0].json()["messages"] == CHAT["messages"]


@pytest.mark.parametrize(("mode", "status"), [("500", 500), ("503", 503), ("429", 429), ("400", 400)])
async def test_status_modes(mode: str, status: int) -> None:
    async with FaultyUpstream("a", mode, retry_after=3) as up:
        got, body = await _post(up)
        assert got == status
        assert orjson.loads(body)["error"]["message"]
    if mode == "429":
        assert up.outcomes == {"429": 1}


async def test_context_length_mode() -> None:
    async with FaultyUpstream("a", "context_length") as up:
        status, body = await _post(up)
    assert status == 400
    assert orjson.loads(body)["error"]["code"] == "context_length_exceeded"


async def test_refused_closes_the_listener_and_reopens_it() -> None:
    async with FaultyUpstream("a") as up:
        assert (await _post(up))[0] == 200
        await up.set_mode("refused")
        with pytest.raises(aiohttp.ClientConnectorError):
            await _post(up)
        await up.set_mode("ok")
        assert (await _post(up))[0] == 200
    assert up.count == 2  # the refused one never arrived


async def test_refused_from_the_start() -> None:
    async with FaultyUpstream("a", "refused") as up:
        with pytest.raises(aiohttp.ClientConnectorError):
            await _post(up)
    assert up.count == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_body_cuts_the_connection(stream: bool) -> None:
    async with FaultyUpstream("a", "reset_body") as up:
        with pytest.raises(aiohttp.ClientPayloadError):
            await _post(up, stream=stream)


async def test_reset_stream_sends_partial_text_then_cuts() -> None:
    async with FaultyUpstream("a", "reset_stream", partial="Hello ") as up:
        got = b""
        async with (
            aiohttp.ClientSession() as http,
            http.post(up.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp,
        ):
            with pytest.raises(aiohttp.ClientPayloadError):
                async for data in resp.content.iter_any():
                    got += data
    events = [orjson.loads(line[6:]) for line in got.split(b"\n") if line.startswith(b"data: ")]
    assert [e["choices"][0]["delta"].get("content") for e in events] == ["", "Hello "]


async def test_garbage_mode() -> None:
    async with FaultyUpstream("a", "garbage") as up:
        status, body = await _post(up, stream=True)
        assert status == 200 and body.startswith(b"data: {this is not json")
        status, body = await _post(up)
        assert status == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)


@pytest.mark.parametrize("mode", ["hang", "drip"])
async def test_hang_and_drip_never_finish_and_see_the_client_leave(mode: str) -> None:
    async with FaultyUpstream("a", mode, drip_s=0.02) as up:
        with pytest.raises(TimeoutError):
            await _post(up, timeout=0.2)
        async with asyncio.timeout(2):
            await up.disconnected.wait()
    assert up.disconnects == 1


async def test_slow_first_byte_then_ok() -> None:
    async with FaultyUpstream("a", "slow", slow_s=0.2) as up:
        with pytest.raises(TimeoutError):
            await _post(up, timeout=0.1)
        status, _ = await _post(up, timeout=1.0)
    assert status == 200
    assert up.outcomes == {"slow": 2}


async def test_every_kth_and_seeded_rate() -> None:
    async with FaultyUpstream("a", "500", every=3) as up:
        statuses = [(await _post(up))[0] for _ in range(6)]
        assert statuses == [200, 200, 500, 200, 200, 500]
        await up.set_mode("503", rate=0.5)
        first = [(await _post(up))[0] for _ in range(20)]
    async with FaultyUpstream("a", seed=1) as again:
        await again.set_mode("503", rate=0.5)
        second = [(await _post(again))[0] for _ in range(20)]
    assert first == second  # seeded: the same faults in the same places
    assert 3 <= first.count(503) <= 17

