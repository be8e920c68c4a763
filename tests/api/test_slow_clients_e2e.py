"""End to end: slow and hostile clients (issue 9 #4), through raw sockets and real HTTP clients.

Each test reproduces what broke: slowloris headers held connections forever, huge headers were
buffered, an rpm=1 key's slow bodies took every in-flight slot (503 for everyone, the master key
included), there was no per-key concurrency limit and no connection cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_bodies import completion
from tests.support.replies import delayed, replying
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-slow"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as up:
        go_slow = delayed(lambda _, body: 0.5 * (b"go-slow" in body), replying(completion()))
        up.route("POST", "/v1/chat/completions", go_slow)
        yield up


def config(up: FakeUpstream, tmp_path: Path, **server: Any) -> dict[str, Any]:
    return {
        "server": server,
        "auth": {"master_key": MASTER},
        "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
    }


def addr(gw: Gateway) -> tuple[str, int]:
    u = urlsplit(gw.url)
    assert u.hostname is not None and u.port is not None
    return u.hostname, u.port


async def read_status(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, bytes]:
    """The status and the whole answer of a raw HTTP exchange (read until the server closes)."""
    data = await asyncio.wait_for(reader.read(65536), timeout)
    with contextlib.suppress(Exception):
        data += await asyncio.wait_for(reader.read(65536), 0.5)
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data[9:12]), data


async def admin(gw: Gateway, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
        s.request(method, gw.url + path, json=body) as r,
    ):
        return r.status, await r.json()


async def new_key(gw: Gateway, **fields: Any) -> str:
    status, created = await admin(gw, "POST", "/admin/keys", {"name": "k", **fields})
    assert status == 201, created
    key: str = created["key"]
    return key


async def chat(session: aiohttp.ClientSession, gw: Gateway, key: str, **extra: Any) -> tuple[int, Any]:
    body = {"model": "smart", "messages": HI, **extra}
    async with session.post(gw.url + "/v1/chat/completions", json=body,
                            headers={"authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(content_type=None)


async def test_slowloris_headers_get_408_and_others_are_served(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(config(upstream, tmp_path, header_timeout_s=0.6)) as gw:
        host, port = addr(gw)
        # one idle connection that never sends a byte, one that trickles headers forever
        idle_r, idle_w = await asyncio.open_connection(host, port)
        slow_r, slow_w = await asyncio.open_connection(host, port)
        slow_w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            with contextlib.suppress(OSError):
                for i in range(20):
                    await asyncio.sleep(0.15)
                    slow_w.write(f"x-pad-{i}: y\r\n".encode())
                    await slow_w.drain()

        trickler = asyncio.create_task(trickle())
        async with aiohttp.ClientSession() as s:  # meanwhile the master key is served
            status, _ = await chat(s, gw, MASTER)
            assert status == 200
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        status, data = await read_status(slow_r)
        assert status == 408 and b"request_timeout" in data
        assert loop.time() - t0 < 2.0  # refused at the timeout, not after the trickle
        status, data = await read_status(idle_r)
        assert status == 408
        assert orjson.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
        trickler.cancel()
        for w in (idle_w, slow_w):
            w.close()


async def test_huge_headers_get_431(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(config(upstream, tmp_path, max_header_bytes=4096)) as gw:
        host, port = addr(gw)
        for head in (
            b"x-big: " + b"a" * 100_000 + b"\r\n",  # one huge header
            b"".join(f"x-h{i}: {'b' * 40}\r\n".encode() for i in range(200)),  # many small ones
        ):
            r, w = await asyncio.open_connection(host, port)
            w.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
            status, data = await read_status(r)
            assert status == 431, data[:200]
            assert b"connection: close" in data
            w.close()
        # under the limit: served
        r, w = await asyncio.open_connection(host, port)
        w.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nx-ok: " + b"c" * 2000 + b"\r\n\r\n")
        status, _ = await read_status(r, timeout=2.0)
        assert status == 200
        w.close()


async def test_slow_bodies_from_an_rpm1_key_do_not_starve_others(upstream: FakeUpstream, tmp_path: Path) -> None:
    """Before: the slot was taken before auth/limits, so 4,096 slow bodies shed everyone with 503."""
    async with run_gateway(config(upstream, tmp_path, max_in_flight=4, body_timeout_s=1.0)) as gw:
        slow_key = await new_key(gw, rpm=1)
        other = await new_key(gw)
        host, port = addr(gw)
        slow = []
        for _ in range(12):  # three times the in-flight limit
            r, w = await asyncio.open_connection(host, port)
            w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nauthorization: Bearer "
                    + slow_key.encode() + b"\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"mo")
            await w.drain()
            slow.append((r, w))
        await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as s:
            results = await asyncio.gather(*(chat(s, gw, other) for _ in range(3)), chat(s, gw, MASTER))
            assert [st for st, _ in results] == [200, 200, 200, 200]
        for r, w in slow:
            status, data = await read_status(r)
            assert status == 408, data[:300]
            assert b"request body was not received" in data
            assert b"connection: close" in data.lower()
            assert await r.read() == b""  # the server closed it: no trickling on after the 408
            w.close()


async def test_per_key_concurrency_limit_answers_429(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with run_gateway(config(upstream, tmp_path, max_concurrency_per_key=3)) as gw:
        two = await new_key(gw, metadata={"max_concurrency": 2})
        default = await new_key(gw)
        slow = {"messages": [{"role": "user", "content": "go-slow"}]}
        async with aiohttp.ClientSession() as s:
            results = await asyncio.gather(*(chat(s, gw, two, **slow) for _ in range(5)))
            statuses = sorted(st for st, _ in results)
            assert statuses == [200, 200, 429, 429, 429]
            err = next(b for st, b in results if st == 429)["error"]
            assert err["code"] == "concurrency_limit_exceeded" and err["type"] == "rate_limit_error"
            results = await asyncio.gather(*(chat(s, gw, default, **slow) for _ in range(5)))
            assert sorted(st for st, _ in results) == [200, 200, 200, 429, 429]
            # the master key has no per-key limit
            results = await asyncio.gather(*(chat(s, gw, MASTER, **slow) for _ in range(5)))
            assert [st for st, _ in results] == [200] * 5
            # Anthropic shape on /v1/messages
            async def message() -> tuple[int, Any]:
                body = {"model": "smart", "max_tokens": 10, "messages": [{"role": "user", "content": "go-slow"}]}
                async with s.post(gw.url + "/v1/messages", json=body, headers={"x-api-key": two}) as r:
                    return r.status, await r.json()
            results = await asyncio.gather(*(message() for _ in range(3)))
            refused = [b for st, b in results if st == 429]
            assert len(refused) == 1 and refused[0]["type"] == "error"
            assert refused[0]["error"]["type"] == "rate_limit_error"
            assert gw.runtime.admission.of_key("master") == 0 and gw.runtime.in_flight == 0


async def test_connection_cap_evicts_idle_then_refuses_with_503(upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = config(upstream, tmp_path, max_connections=5, header_timeout_s=30, body_timeout_s=30)
    async with run_gateway(cfg) as gw:
        host, port = addr(gw)
        # five idle connections (slowloris): a new client evicts the oldest and is served
        idle = [await asyncio.open_connection(host, port) for _ in range(5)]
        await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as s:
            status, _ = await chat(s, gw, MASTER)
            assert status == 200
        status, data = await read_status(idle[0][0])
        assert status == 503 and b"retry-after: 1" in data and b"idle one was closed" in data
        for _, w in idle:
            w.close()
        await asyncio.sleep(0.1)
        # five busy connections (bodies on their way): nothing to evict, a new one gets 503
        busy = []
        for _ in range(5):
            r, w = await asyncio.open_connection(host, port)
            w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nauthorization: Bearer " + MASTER.encode()
                    + b"\r\ncontent-length: 100\r\n\r\n{")
            busy.append((r, w))
        await asyncio.sleep(0.1)
        r, w = await asyncio.open_connection(host, port)
        w.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        status, data = await read_status(r)
        assert status == 503 and b"retry-after: 1" in data and b"too many open connections" in data
        w.close()
        for _, bw in busy:
            bw.close()
        await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as s:
            status, _ = await chat(s, gw, MASTER)
            assert status == 200


async def test_a_key_with_a_concurrency_limit_cannot_hold_more_slow_bodies(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Slow uploads hold connections, not slots: a limited key may have only so many arriving."""
    async with run_gateway(config(upstream, tmp_path, body_timeout_s=30)) as gw:
        key = await new_key(gw, metadata={"max_concurrency": 2})
        host, port = addr(gw)
        conns = []
        for _ in range(3):
            r, w = await asyncio.open_connection(host, port)
            w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nauthorization: Bearer " + key.encode()
                    + b"\r\ncontent-length: 100\r\n\r\n{")
            conns.append((r, w))
            await asyncio.sleep(0.05)
        status, data = await read_status(conns[2][0], timeout=2.0)
        assert status == 429 and b"request bodies arriving" in data and b"connection: close" in data.lower()
        async with aiohttp.ClientSession() as s:  # the master key is not limited
            assert (await chat(s, gw, MASTER))[0] == 200
        for _, w in conns:
            w.close()


async def test_a_body_trickling_after_the_answer_is_cut_at_the_body_timeout(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with run_gateway(config(upstream, tmp_path, body_timeout_s=0.5)) as gw:
        host, port = addr(gw)
        sock = socket.create_connection((host, port))
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nauthorization: Bearer sk-fw-nope"
                     b"\r\ncontent-length: 1000\r\n\r\n{")
        sock.settimeout(0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got = b""
        closed_after = None
        while loop.time() - t0 < 3.0:  # keep trickling: the connection must not be held forever
            try:
                sock.sendall(b" ")
                chunk = sock.recv(4096)
                if not chunk:
                    closed_after = loop.time() - t0
                    break
                got += chunk
            except TimeoutError:
                pass
            except OSError:
                closed_after = loop.time() - t0
                break
            await asyncio.sleep(0.05)
        sock.close()
        assert got.startswith(b"HTTP/1.1 401")  # refused before the body was read
        assert closed_after is not None and closed_after < 2.0


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_unhashable_role_is_400(upstream: FakeUpstream, tmp_path: Path, path: str) -> None:
    async with run_gateway(config(upstream, tmp_path)) as gw, aiohttp.ClientSession() as s:
        body = {"model": "smart", "max_tokens": 5, "messages": [{"role": [], "content": "x"}]}
        async with s.post(gw.url + path, json=body, headers={"authorization": f"Bearer {MASTER}"}) as r:
            assert r.status == 400, await r.text()
            assert "role" in (await r.text())


async def test_body_timeout_without_the_guarded_protocol() -> None:
    """Embedded under another server (no Fluxway protocol in the scope), read_body keeps the time."""
    from fluxway.api.asgi import read_body
    from fluxway.errors import GatewayError

    sent = [{"type": "http.request", "body": b'{"mo', "more_body": True}]

    async def receive() -> dict[str, Any]:
        if sent:
            return sent.pop()
        await asyncio.sleep(3600)
        raise AssertionError

    with pytest.raises(GatewayError) as info:
        await read_body(receive, {"content-length": "100"}, 1 << 20, 0.2, {"type": "http"})
    assert info.value.status == 408 and info.value.code == "request_timeout"
