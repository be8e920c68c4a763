"""/mcp end to end, with the official MCP SDK on both sides: real upstream servers (streamable HTTP
in a subprocess, stdio as Fluxway's child), the gateway in front, and SDK client sessions with keys
of different allowlists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.mcp.upstreams import SECRET, HttpMcpServer, stdio_server
from tests.support.gateway import Gateway, run_gateway
from tests.support.ports import free_port

MASTER = "sk-master-mcp"
TOOLS = ["echo", "fail", "grow", "leak", "search", "slow", "whoami"]


def config(tmp_path: Path, docs: HttpMcpServer, ghost_port: int) -> dict[str, Any]:
    fast = {"backoff_s": 0.1, "max_backoff_s": 0.3, "connect_timeout_s": 10}
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "mcp": {"servers": [
            {"name": "docs", "transport": "streamable_http", "url": docs.url, **fast, "call_timeout_s": 5},
            stdio_server("files", **fast),
            # Nothing listens there: down at start, and it must hold nothing up.
            {"name": "ghost", "transport": "streamable_http", "url": f"http://127.0.0.1:{ghost_port}/mcp", **fast},
            # The same server, called with the caller's own credential forwarded.
            {"name": "mine", "transport": "streamable_http", "url": docs.url, **fast,
             "forward_headers": {"x-user-token": "x-upstream-token"}},
        ]},
    }


async def admin(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s, \
            s.request(method, gw.url + path, json=body) as r:
        return r.status, await r.json()


async def new_key(gw: Gateway, **fields: Any) -> str:
    status, created = await admin(gw, "POST", "/admin/keys", {"name": "k", **fields})
    assert status == 200 or status == 201, created
    return str(created["key"])


@asynccontextmanager
async def mcp_client(gw: Gateway, key: str, **headers: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {key}", **headers}, timeout=30) as http,
        streamable_http_client(gw.url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Gateway, HttpMcpServer]]:
    docs = HttpMcpServer(free_port())
    await asyncio.to_thread(docs.start)
    try:
        async with run_gateway(config(tmp_path, docs, free_port())) as gw:
            service = gw.runtime.mcp
            assert service is not None
            for server in service.upstreams:
                if server.name != "ghost":
                    assert await server.wait_connected(20), server.status()
            yield gw, docs
    finally:
        docs.kill()


async def test_two_keys_list_and_call_what_their_allowlists_allow(setup: tuple[Gateway, HttpMcpServer]) -> None:
    gw, _ = setup
    key_a = await new_key(gw, mcp_tools=["docs.*"])
    key_b = await new_key(gw, mcp_tools=["files.echo", "docs.search"])
    async with mcp_client(gw, key_a) as a, mcp_client(gw, key_b) as b:
        listed_a = sorted(t.name for t in (await a.list_tools()).tools)
        assert listed_a == [f"docs.{t}" for t in TOOLS]
        listed_b = (await b.list_tools()).tools
        assert sorted(t.name for t in listed_b) == ["docs.search", "files.echo"]
        echo = next(t for t in listed_b if t.name == "files.echo")
        assert echo.description == "Echo the text back." and echo.input_schema["properties"]["text"]

        found = await a.call_tool("docs.search", {"query": "mcp"})
        assert not found.is_error and text(found) == "docs results for 'mcp'"
        echoed = await b.call_tool("files.echo", {"text": "through stdio"})
        assert not echoed.is_error and text(echoed) == "through stdio"

        # A tool of another key's allowlist: a JSON-RPC error, saying nothing of what exists.
        with pytest.raises(MCPError) as forbidden:
            await a.call_tool("files.echo", {"text": "x"})
        assert forbidden.value.error.code == -32003
        assert forbidden.value.error.message == "this API key may not call tool 'files.echo'"
        with pytest.raises(MCPError) as forbidden_too:
            await b.call_tool("files.nothing", {})
        assert forbidden_too.value.error.code == -32003  # the same answer whether it exists or not
        with pytest.raises(MCPError) as unknown:
            await a.call_tool("docs.nothing", {})
        assert unknown.value.error.code == -32602 and unknown.value.error.message == "unknown tool 'docs.nothing'"

        # The upstream tool's own error: a tool result with its message, secrets masked.
        failed = await a.call_tool("docs.fail", {"message": "disk full"})
        assert failed.is_error and "disk full" in text(failed)
        leaked = await a.call_tool("docs.leak", {})
        assert leaked.is_error and "password is" in text(leaked)
        assert SECRET not in text(leaked) and "[REDACTED]" in text(leaked)

    async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
        metrics = await r.text()
    assert 'fluxway_mcp_tool_call_duration_seconds_count{server="docs",tool="docs.search",status="ok"} 1' in metrics
    assert 'fluxway_mcp_tool_call_duration_seconds_count{server="files",tool="files.echo",status="ok"} 1' in metrics
    fail = 'fluxway_mcp_tool_call_duration_seconds_count{server="docs",tool="docs.fail",status="tool_error"} 1'
    assert fail in metrics
    assert 'fluxway_mcp_rejections_total{reason="forbidden_tool"} 2' in metrics
    assert 'fluxway_mcp_rejections_total{reason="unknown_tool"} 1' in metrics
    assert "docs.nothing" not in metrics and "files.nothing" not in metrics  # only known tools are labels

    # Every call is a usage record (endpoint mcp) in /admin/logs.
    await gw.runtime.governance.usage.flush()
    status, logs = await admin(gw, "GET", "/admin/logs?limit=100")
    assert status == 200
    calls = [(r["endpoint"], r["model"], r["status"]) for r in logs["data"]]
    assert ("mcp", "docs.search", 200) in calls and ("mcp", "files.echo", 200) in calls
    assert ("mcp", "files.echo", 403) in calls and ("mcp", "docs.nothing", 404) in calls


async def test_a_key_without_mcp_tools_may_use_every_tool_and_an_empty_list_none(
    setup: tuple[Gateway, HttpMcpServer],
) -> None:
    gw, _ = setup
    everything = await new_key(gw)
    nothing = await new_key(gw, mcp_tools=[])
    status, team = await admin(gw, "POST", "/admin/teams", {"name": "readers", "mcp_tools": ["*.search"]})
    assert status in (200, 201), team
    member = await new_key(gw, team="readers", mcp_tools=["docs.*"])  # both the key's and the team's globs
    async with mcp_client(gw, everything) as e, mcp_client(gw, nothing) as n, mcp_client(gw, member) as m:
        names = {t.name for t in (await e.list_tools()).tools}
        assert {f"docs.{t}" for t in TOOLS} | {f"files.{t}" for t in TOOLS} <= names
        assert not any(n.startswith("ghost.") for n in names)  # down: it offers nothing
        assert (await n.list_tools()).tools == []
        assert [t.name for t in (await m.list_tools()).tools] == ["docs.search"]


async def test_the_caller_credential_is_forwarded_per_call(setup: tuple[Gateway, HttpMcpServer]) -> None:
    gw, _ = setup
    key = await new_key(gw, mcp_tools=["mine.whoami"])
    async with mcp_client(gw, key, **{"x-user-token": "user-7-token"}) as session:
        got = await session.call_tool("mine.whoami", {})
    assert text(got) == "user-7-token"
    async with mcp_client(gw, key) as session:
        assert text(await session.call_tool("mine.whoami", {})) == "(none)"


async def test_an_upstream_killed_mid_run_fails_as_a_tool_error_and_comes_back(
    setup: tuple[Gateway, HttpMcpServer],
) -> None:
    gw, docs = setup
    key = await new_key(gw)
    service = gw.runtime.mcp
    assert service is not None
    docs_server = next(s for s in service.upstreams if s.name == "docs")
    async with mcp_client(gw, key) as session:
        assert text(await session.call_tool("docs.search", {"query": "a"})) == "docs results for 'a'"
        await asyncio.to_thread(docs.kill)
        down = await session.call_tool("docs.search", {"query": "b"})
        assert down.is_error and "docs" in text(down)
        # The other server keeps working.
        assert text(await session.call_tool("files.echo", {"text": "still here"})) == "still here"

        async def gone() -> bool:
            return not docs_server.up

        await eventually(gone)
        unavailable = await session.call_tool("docs.search", {"query": "c"})
        assert unavailable.is_error and "unavailable" in text(unavailable)
        _, servers = await admin(gw, "GET", "/admin/mcp/servers")
        docs_status = next(s for s in servers["data"] if s["name"] == "docs")
        assert docs_status["up"] is False and docs_status["last_error"]

        await asyncio.to_thread(docs.start)  # the same port: picked up again by the backoff loop
        assert await docs_server.wait_connected(20), docs_server.status()
        assert text(await session.call_tool("docs.search", {"query": "d"})) == "docs results for 'd'"


async def test_a_server_down_at_start_is_reported_and_blocks_nothing(setup: tuple[Gateway, HttpMcpServer]) -> None:
    gw, _ = setup
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/health/ready") as r:
            ready = await r.json()
        async with s.get(gw.url + "/metrics") as r:
            metrics = await r.text()
    assert r.status == 200
    assert ready["status"] == "degraded" and "mcp" in ready["degraded"]
    assert 'fluxway_mcp_server_up{server="ghost"} 0' in metrics
    assert 'fluxway_mcp_server_up{server="docs"} 1' in metrics
    status, servers = await admin(gw, "GET", "/admin/mcp/servers")
    ghost = next(s for s in servers["data"] if s["name"] == "ghost")
    assert status == 200 and ghost["up"] is False and ghost["failures"] >= 1 and ghost["last_error"]
    key = await new_key(gw)
    async with mcp_client(gw, key) as session:
        with pytest.raises(MCPError) as err:
            await session.call_tool("ghost.search", {})
        assert err.value.error.code == -32602  # no tools known while it is down


async def test_tools_are_listed_again_on_list_changed(setup: tuple[Gateway, HttpMcpServer]) -> None:
    gw, _ = setup
    key = await new_key(gw, mcp_tools=["files.*"])
    async with mcp_client(gw, key) as session:
        assert "files.extra" not in {t.name for t in (await session.list_tools()).tools}
        assert text(await session.call_tool("files.grow", {})) == "grown"

        async def listed() -> bool:
            return "files.extra" in {t.name for t in (await session.list_tools()).tools}

        await eventually(listed, timeout=5)  # well before the periodic listing (30 s)
        assert text(await session.call_tool("files.extra", {})) == "extra!"


async def test_tool_calls_count_against_the_key_rate_limit(setup: tuple[Gateway, HttpMcpServer]) -> None:
    gw, _ = setup
    key = await new_key(gw, rpm=2)
    async with mcp_client(gw, key) as session:
        for _ in range(2):
            assert not (await session.call_tool("files.echo", {"text": "x"})).is_error
        with pytest.raises(MCPError) as err:
            await session.call_tool("files.echo", {"text": "x"})
    assert err.value.error.code == -32029 and "rate limit exceeded" in err.value.error.message


async def test_bad_requests_get_clear_errors(setup: tuple[Gateway, HttpMcpServer]) -> None:
    gw, _ = setup
    key = await new_key(gw)
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/mcp", data=b"{}", headers=accept) as r:
            assert r.status == 401 and r.headers["www-authenticate"].startswith("Bearer")
            body = await r.json()
            assert body["error"]["type"] == "authentication_error"
            assert "Authorization: Bearer" in body["error"]["message"]
        async with s.post(gw.url + "/mcp", data=b"{}", headers={**accept, "authorization": "Bearer sk-fw-wrong"}) as r:
            assert r.status == 401 and (await r.json())["error"]["message"] == "invalid API key"
        auth = {**accept, "authorization": f"Bearer {key}"}
        async with s.post(gw.url + "/mcp", data=b"{not json", headers=auth) as r:
            parse = await r.json()
            assert r.status == 400 and parse["error"]["code"] == -32700
        async with s.post(gw.url + "/mcp", data=b'{"jsonrpc": "2.0", "nonsense": 1}', headers=auth) as r:
            invalid = await r.json()
            assert r.status == 400 and invalid["error"]["code"] in (-32600, -32602)
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "nope.tool", "arguments": {}}}
        async with s.post(gw.url + "/mcp", json=call, headers=auth) as r:
            unknown = await r.json()
            assert unknown["id"] == 7 and unknown["error"]["code"] == -32602
            assert unknown["error"]["message"] == "unknown tool 'nope.tool'"
