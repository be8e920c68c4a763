"""Resilience end to end: the openai SDK -> the gateway -> two fault-injecting upstreams (issue 4).

First the fault injector itself is checked against a plain aiohttp client (each mode must really
fail the way it says, or the scenarios below would prove nothing); then every fault mode on provider
A under concurrent load, with B healthy, must be invisible to the client.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.support.blackhole import Blackhole
from tests.support.faults import FAILURE_MODES, FaultyUpstream
from tests.support.gateway import Gateway, run_gateway
from tests.support.load import run_load
from tests.support.pair import MODEL_A, pair_config

CHAT = {"model": "x", "messages": [{"role": "user", "content": "Hi"}]}


async def _post(up: FaultyUpstream, stream: bool = False, timeout: float = 0.5) -> tuple[int, bytes]:
    body = {**CHAT, "stream": stream}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
        http.post(up.url + "/v1/chat/completions", json=body) as resp,
    ):
        return resp.status, await resp.read()


MASTER = "sk-master"


async def _providers(gw: Gateway, key: str = MASTER) -> dict[str, Any]:
    """``GET /admin/providers``, with ``targets`` keyed by "provider/model"."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(gw.url + "/admin/providers", headers={"authorization": f"Bearer {key}"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
    targets = data["targets"]
    if isinstance(targets, list):
        data["targets"] = {t["target"]: t for t in targets}
    return data


async def _ask(client: openai.AsyncOpenAI, model: str = "m") -> Any:
    return await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hi"}]
    )


async def _text(raw: Any, stream: bool) -> str:
    """The answer's text from a ``with_raw_response`` result, streamed or not."""
    if stream:
        return "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    return raw.parse().choices[0].message.content or ""


def _client(gw: Gateway, key: str = "x") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


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


async def test_stall_sends_partial_text_then_nothing() -> None:
    async with FaultyUpstream("a", "stall", partial="Hello ") as up:
        got = b""
        async with (
            aiohttp.ClientSession() as http,
            http.post(up.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as resp,
        ):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    async for data in resp.content.iter_any():
                        got += data
        async with asyncio.timeout(2):
            await up.disconnected.wait()
    assert got.count(b"data: ") == 2 and b"Hello " in got


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


# -- one provider failing, under load -------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", FAILURE_MODES)
async def test_one_provider_failing_is_invisible_under_load(mode: str, stream: bool) -> None:
    failover = stream and mode in ("reset_stream", "stall")  # output sent: only mid-stream failover hides it
    async with FaultyUpstream("a", mode, slow_s=2.0, retry_after=2) as a, FaultyUpstream("b") as b:
        cfg = pair_config(a, b, model={"stream_failover": failover}, timeout={"first_token": 0.3, "total": 1.0})
        for p in cfg["providers"]:
            p["continuation"] = "prefill"  # mocks that continue a trailing assistant message (issue 10)
        async with run_gateway(cfg) as gw, asyncio.timeout(20):
            load = await run_load(_client(gw), 200, concurrency=32, stream=stream)
    assert load.errors == []
    if failover:
        # A stream A broke is continued by B (its headers, naming A, were sent before A broke);
        # once A's breaker opens, streams go to B from the start.
        assert load.texts == {"Hello Hello from b": a.outcomes[mode], "Hello from b": 200 - a.outcomes[mode]}
    else:
        assert load.providers == {"b": 200}
        assert load.texts == {"Hello from b": 200}
    if mode == "refused":
        assert a.count == 0
    else:
        assert a.outcomes[mode] >= 1  # A really was tried, and failed
    assert b.count == 200


async def test_stream_broken_after_output_without_failover_ends_with_an_error_event() -> None:
    async with (
        FaultyUpstream("a", "reset_stream", partial="Hello ") as a,
        FaultyUpstream("b") as b,
        run_gateway(pair_config(a, b)) as gw,
    ):
        stream = await _client(gw).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        got = ""
        with pytest.raises(openai.APIError):
            async with asyncio.timeout(5):
                async for c in stream:
                    if c.choices:
                        got += c.choices[0].delta.content or ""
    assert got == "Hello "
    assert b.count == 0  # nothing was tried elsewhere: the client already has part of A's answer


@pytest.mark.parametrize("mode", ["reset_body", "garbage", "500", "hang"])
async def test_stream_broken_before_its_first_byte_fails_over_unseen(mode: str) -> None:
    async with (
        FaultyUpstream("a", mode) as a,
        FaultyUpstream("b") as b,
        run_gateway(pair_config(a, b, model={"retry": {"attempts": 1}})) as gw,
    ):
        raw = await _client(gw).chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        chunks = [c async for c in raw.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from b"
    assert raw.headers["x-fluxway-provider"] == "b"
    assert raw.headers["x-fluxway-attempts"] == "2"
    assert (a.count, b.count) == (1, 1)


# -- every provider failing -----------------------------------------------------------------------


async def _fail(gw: Gateway, stream: bool = False) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        async with asyncio.timeout(5):  # never hangs the client
            resp = await _client(gw).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Hi"}], stream=stream
            )
            if stream:
                async for _ in resp:  # type: ignore[union-attr]
                    pass
    return info.value


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("mode", "status", "kind"),
    [
        ("500", 502, "upstream_5xx"),
        ("refused", 502, "connect"),
        ("reset_body", 502, "upstream_5xx"),
        ("hang", 504, "timeout"),
    ],
)
async def test_all_failing_is_a_fast_error_naming_what_was_tried(
    mode: str, status: int, kind: str, stream: bool
) -> None:
    async with FaultyUpstream("a", mode) as a, FaultyUpstream("b", mode) as b:
        cfg = pair_config(
            a,
            b,
            model={"retry": {"attempts": 2, "backoff_ms": 1, "max_backoff_ms": 2}},
            timeout_b={"first_token": 0.3, "total": 2},
        )
        async with run_gateway(cfg) as gw:
            err = await _fail(gw, stream)
    assert err.status_code == status
    assert "a/model-a" in err.message and "b/model-b" in err.message
    assert kind in err.message
    # Retries stay on a target, except after a timeout when another target is left: waiting out a
    # second timeout there would only delay the failover (the last target still gets its retries).
    tries_a = 1 if kind == "timeout" else 2
    assert err.response.headers["x-fluxway-attempts"] == str(tries_a + 2)
    if mode != "refused":
        assert (a.count, b.count) == (tries_a, 2)


async def test_all_rate_limited_is_a_429_with_retry_after() -> None:
    async with (
        FaultyUpstream("a", "429", retry_after=3) as a,
        FaultyUpstream("b", "429", retry_after=7) as b,
        run_gateway(pair_config(a, b, model={"retry": {"attempts": 1}})) as gw,
    ):
        err = await _fail(gw)
    assert isinstance(err, openai.RateLimitError)
    assert "a/model-a" in err.message and "b/model-b" in err.message
    assert int(err.response.headers["retry-after"]) >= 3
    assert (a.count, b.count) == (1, 1)


# -- which errors are retried ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_upstream_400_is_never_retried_nor_tried_elsewhere(stream: bool) -> None:
    async with (
        FaultyUpstream("a", "400") as a,
        FaultyUpstream("b") as b,
        run_gateway(pair_config(a, b, model={"retry": {"attempts": 3}})) as gw,
    ):
        err = await _fail(gw, stream)
    assert isinstance(err, openai.BadRequestError)
    assert "invalid 'temperature'" in err.message
    assert (a.count, b.count) == (1, 0)


async def test_retryable_error_is_retried_on_the_same_target_then_the_next() -> None:
    async with (
        FaultyUpstream("a", "503") as a,
        FaultyUpstream("b") as b,
        run_gateway(pair_config(a, b, model={"retry": {"attempts": 3, "backoff_ms": 1}})) as gw,
    ):
        raw = await _client(gw).chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "Hi"}]
        )
    assert raw.headers["x-fluxway-provider"] == "b"
    assert raw.headers["x-fluxway-attempts"] == "4"
    assert (a.count, b.count) == (3, 1)


async def test_retry_recovers_on_the_same_target() -> None:
    # Requests 2, 4, ... to A fail: the first call succeeds at once, the second on its retry.
    async with (
        FaultyUpstream("a", "500", every=2) as a,
        FaultyUpstream("b") as b,
        run_gateway(pair_config(a, b)) as gw,
    ):
        first = await _ask(_client(gw))
        second = await _ask(_client(gw))
    assert [first.headers["x-fluxway-attempts"], second.headers["x-fluxway-attempts"]] == ["1", "2"]
    assert second.headers["x-fluxway-provider"] == "a"
    assert (a.count, b.count) == (3, 0)


async def test_429_with_retry_after_cools_the_target() -> None:
    async with (
        FaultyUpstream("a", "429", retry_after=30) as a,
        FaultyUpstream("b") as b,
        run_gateway(pair_config(a, b, auth={"master_key": MASTER})) as gw,
    ):
        client = _client(gw, MASTER)
        async with asyncio.timeout(5):  # the 30 s retry-after is never slept through
            for _ in range(10):
                raw = await client.chat.completions.with_raw_response.create(
                    model="m", messages=[{"role": "user", "content": "Hi"}]
                )
                assert raw.headers["x-fluxway-provider"] == "b"
        board = await _providers(gw, "sk-master")
    assert (a.count, b.count) == (1, 10)
    cooling = board["targets"]["a/model-a"]
    assert cooling["cooldown_until"] is not None


async def test_429_cools_only_the_key_that_was_rate_limited() -> None:
    async with (
        FaultyUpstream("a", "429", retry_after=30, only_key="sk-a1") as a,
        FaultyUpstream("b") as b,
    ):
        cfg = pair_config(a, b, auth={"master_key": MASTER})
        cfg["providers"][0]["api_keys"] = ["sk-a1", "sk-a2"]
        async with run_gateway(cfg) as gw:
            client = _client(gw, MASTER)
            async with asyncio.timeout(5):
                for _ in range(6):
                    assert (await _ask(client)).headers["x-fluxway-provider"] == "a"  # A's other key
            board = await _providers(gw)
    keys = [r.headers["authorization"] for r in a.requests]
    assert keys.count("Bearer sk-a1") == 1  # rate limited once, then left to cool
    assert keys.count("Bearer sk-a2") == 6
    assert b.count == 0
    key_views = board["keys"]["a"]
    assert key_views[0]["cooldown_until"] is not None
    assert key_views[1]["cooldown_until"] is None
    assert board["targets"]["a/model-a"]["state"] == "closed"


# -- circuit breaker ------------------------------------------------------------------------------


async def test_breaker_opens_after_repeated_failures_then_probes_and_recovers() -> None:
    async with FaultyUpstream("a", "500") as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"retry": {"attempts": 1}},
            routing={"breaker": {"failure_threshold": 3, "open_cooldown_s": 1.0}},
            auth={"master_key": MASTER},
        )
        async with run_gateway(cfg) as gw:
            client = _client(gw, MASTER)
            for _ in range(8):
                assert (await _ask(client)).headers["x-fluxway-provider"] == "b"
            assert a.count == 3  # then the breaker opened: A saw no more requests
            board = await _providers(gw)
            assert board["targets"]["a/model-a"]["state"] == "open"
            assert board["targets"]["b/model-b"]["state"] == "closed"

            await a.set_mode("ok")
            assert (await _ask(client)).headers["x-fluxway-provider"] == "b"  # still open
            assert a.count == 3
            async with asyncio.timeout(5):  # the cool-down passes: a request probes A, and A answers
                while (await _ask(client)).headers["x-fluxway-provider"] != "a":
                    await asyncio.sleep(0.05)
            assert a.count == 4  # exactly one probe
            assert (await _providers(gw))["targets"]["a/model-a"]["state"] == "closed"
            for _ in range(3):
                assert (await _ask(client)).headers["x-fluxway-provider"] == "a"
    assert a.count == 7


async def test_failed_probe_reopens_the_breaker() -> None:
    async with FaultyUpstream("a", "503") as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"retry": {"attempts": 1}},
            routing={"breaker": {"failure_threshold": 2, "open_cooldown_s": 0.5}},
            auth={"master_key": MASTER},
        )
        async with run_gateway(cfg) as gw:
            client = _client(gw, MASTER)
            for _ in range(4):
                assert (await _ask(client)).headers["x-fluxway-provider"] == "b"
            assert a.count == 2
            async with asyncio.timeout(5):  # until the cool-down passes and a request probes A
                while a.count == 2:
                    assert (await _ask(client)).headers["x-fluxway-provider"] == "b"  # the probe failed over
                    await asyncio.sleep(0.02)
            for _ in range(4):
                assert (await _ask(client)).headers["x-fluxway-provider"] == "b"
            assert a.count == 3  # one probe, failed: open again (for longer)
            view = (await _providers(gw))["targets"]["a/model-a"]
            assert view["state"] == "open"
            assert view["trips"] == 2
            assert view["open_until"] - view.get("last_failure_at", 0) >= 0.9  # the cool-down doubled


async def test_half_open_lets_one_probe_through_while_the_rest_go_elsewhere() -> None:
    async with FaultyUpstream("a", "500", slow_s=0.5) as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"retry": {"attempts": 1}},
            routing={"breaker": {"failure_threshold": 2, "open_cooldown_s": 0.6, "half_open_probes": 1}},
            timeout={"first_token": 5},
        )
        async with run_gateway(cfg) as gw:
            client = _client(gw)
            for _ in range(3):
                await _ask(client)
            assert a.count == 2  # open
            await a.set_mode("slow")  # recovered, but slow: its probe stays in flight a while
            await asyncio.sleep(0.65)
            load = await run_load(client, 20, concurrency=20)
    assert load.errors == []
    assert a.count == 3  # exactly one probe while half-open
    assert load.providers == {"a": 1, "b": 19}


async def test_admin_providers_needs_the_master_key() -> None:
    async with (
        FaultyUpstream("a") as a,
        FaultyUpstream("b") as b,
        run_gateway(pair_config(a, b, auth={"master_key": MASTER})) as gw,
    ):
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"authorization": "Bearer sk-wrong"}):
                async with http.get(gw.url + "/admin/providers", headers=headers) as resp:
                    assert resp.status in (401, 403)
        await _ask(_client(gw, MASTER))
        board = await _providers(gw)
    assert board["targets"]["a/model-a"]["state"] == "closed"


async def _ready(gw: Gateway) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(gw.url + "/health/ready") as resp:
        return resp.status, await resp.json()


async def test_active_health_checks_open_and_close_breakers_without_traffic() -> None:
    async with FaultyUpstream("a", "500") as a, FaultyUpstream("b", "500") as b:
        cfg = pair_config(
            a,
            b,
            routing={"breaker": {"failure_threshold": 2, "open_cooldown_s": 0.2}},
            auth={"master_key": MASTER},
        )
        for p in cfg["providers"]:
            p["health_check"] = {"interval_s": 0.05, "timeout_s": 1}
        async with run_gateway(cfg) as gw:
            assert (await _ready(gw))[0] == 200
            async with asyncio.timeout(5):  # the checks alone find both targets failing
                status, body = await _ready(gw)
                while status != 503:
                    await asyncio.sleep(0.02)
                    status, body = await _ready(gw)
            assert body["unhealthy_models"] == ["m"]
            board = await _providers(gw)
            assert board["targets"]["a/model-a"]["trips"] >= 1 and board["targets"]["b/model-b"]["trips"] >= 1
            sent = a.requests[0].json()
            assert sent["model"] == "model-a" and sent["max_tokens"] == 1  # a cheap probe

            await a.set_mode("ok")
            async with asyncio.timeout(5):  # a probe succeeds: the model is ready again
                while (await _ready(gw))[0] != 200:
                    await asyncio.sleep(0.02)
            assert (await _providers(gw))["targets"]["a/model-a"]["state"] == "closed"
            assert (await _ask(_client(gw, MASTER))).headers["x-fluxway-provider"] == "a"


# -- timeouts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_provider_first_token_timeout_moves_on(stream: bool) -> None:
    async with FaultyUpstream("a", "hang") as a, FaultyUpstream("b") as b:
        cfg = pair_config(a, b, model={"retry": {"attempts": 1}}, timeout={"first_token": 0.2, "total": 30})
        async with run_gateway(cfg) as gw, asyncio.timeout(5):
            load = await run_load(_client(gw), 3, concurrency=1, stream=stream)
            async with asyncio.timeout(2):
                await a.disconnected.wait()  # the gateway hung up on A
    assert load.errors == []
    assert load.providers == {"b": 3}


async def test_connect_timeout_moves_on() -> None:
    async with FaultyUpstream("b") as b:
        with Blackhole() as hole:
            a = FaultyUpstream("a")
            a.url = hole.url  # A's base URL is a port where connecting hangs
            cfg = pair_config(a, b, model={"retry": {"attempts": 1}}, timeout={"connect": 0.2, "total": 60})
            async with run_gateway(cfg) as gw, asyncio.timeout(5):  # the total of 60 s would blow this
                raw = await _ask(_client(gw))
    assert raw.headers["x-fluxway-provider"] == "b"
    assert raw.headers["x-fluxway-attempts"] == "2"


async def test_connect_timeout_alone_is_a_504() -> None:
    with Blackhole() as hole:
        a, b = FaultyUpstream("a"), FaultyUpstream("b")
        a.url = b.url = hole.url
        t = {"connect": 0.2, "total": 60}
        cfg = pair_config(a, b, model={"retry": {"attempts": 1}}, timeout=t, timeout_b=t)
        async with run_gateway(cfg) as gw:
            err = await _fail(gw)
    assert err.status_code == 504
    assert "a/model-a" in err.message and "b/model-b" in err.message


async def test_model_timeout_overrides_the_providers() -> None:
    async with FaultyUpstream("a", "hang") as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"retry": {"attempts": 1}, "timeout": {"connect": 1, "first_token": 0.3, "total": 2}},
            timeout={"first_token": 60, "total": 120},
        )
        async with run_gateway(cfg) as gw, asyncio.timeout(5):  # the provider's 60 s would blow this
            raw = await _ask(_client(gw))
    assert raw.headers["x-fluxway-provider"] == "b"
    assert a.outcomes == {"hang": 1}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_total_timeout_ends_a_dripping_upstream(stream: bool) -> None:
    async with FaultyUpstream("a", "drip", drip_s=0.05) as a, FaultyUpstream("b") as b:
        cfg = pair_config(a, b, model={"retry": {"attempts": 1}}, timeout={"first_token": 0.5, "total": 0.4})
        async with run_gateway(cfg) as gw, asyncio.timeout(5):
            load = await run_load(_client(gw), 2, concurrency=1, stream=stream)
    assert load.errors == []
    assert load.providers == {"b": 2}
    assert a.outcomes == {"drip": 2}


async def test_hung_upstream_alone_is_a_504_not_a_hang() -> None:
    async with FaultyUpstream("a", "hang") as a, FaultyUpstream("b", "hang") as b:
        small = {"first_token": 0.2, "total": 0.5}
        cfg = pair_config(a, b, model={"retry": {"attempts": 1}}, timeout=small, timeout_b=small)
        async with run_gateway(cfg) as gw:
            err = await _fail(gw, stream=True)
    assert err.status_code == 504
    assert (a.count, b.count) == (1, 1)


# -- model fallbacks ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_model_fallbacks_answer_when_every_target_fails(stream: bool) -> None:
    async with FaultyUpstream("a", "500") as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"targets": [{"provider": "a", "model": MODEL_A}], "fallbacks": ["y"], "retry": {"attempts": 1}},
            extra_models=[{"name": "y", "targets": [{"provider": "b", "model": "model-y"}]}],
        )
        async with run_gateway(cfg) as gw:
            raw = await _client(gw).chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": "Hi"}], stream=stream
            )
            text = await _text(raw, stream)
    assert text == "Hello from b"
    assert raw.headers["x-fluxway-provider"] == "b"
    assert raw.headers["x-fluxway-model"] == "model-y"
    assert raw.headers["x-fluxway-attempts"] == "2"
    assert b.requests[-1].json()["model"] == "model-y"
    assert a.count == 1


async def test_context_length_error_moves_to_the_larger_context_model() -> None:
    async with FaultyUpstream("a", "context_length") as a, FaultyUpstream("b") as b:
        cfg = pair_config(
            a,
            b,
            model={"targets": [{"provider": "a", "model": MODEL_A}], "context_fallback": "big"},
            extra_models=[{"name": "big", "targets": [{"provider": "b", "model": "model-big"}]}],
        )
        async with run_gateway(cfg) as gw:
            raw = await _ask(_client(gw))
    assert raw.parse().choices[0].message.content == "Hello from b"
    assert raw.headers["x-fluxway-model"] == "model-big"
    assert (a.count, b.count) == (1, 1)  # a context error is not retried on A
    assert b.requests[0].json()["messages"] == [{"role": "user", "content": "Hi"}]


async def test_context_length_error_without_context_fallback_is_a_400() -> None:
    async with (
        FaultyUpstream("a", "context_length") as a,
        FaultyUpstream("b") as b,
        run_gateway(pair_config(a, b)) as gw,
    ):
        err = await _fail(gw)
    assert isinstance(err, openai.BadRequestError)
    assert err.code == "context_length_exceeded"
    assert a.count == 1
