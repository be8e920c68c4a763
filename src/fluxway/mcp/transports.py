"""Opening a connection to an upstream MCP server with the MCP SDK: streamable HTTP, SSE or stdio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from fluxway.mcp.settings import McpServerConfig

Streams = tuple[Any, Any]  # the SDK's (read stream, write stream)


@contextlib.asynccontextmanager
async def open_streams(cfg: McpServerConfig, extra_headers: Mapping[str, str] | None = None) -> AsyncIterator[Streams]:
    """The SDK's stream pair to ``cfg``'s server (static headers, plus ``extra_headers`` per call)."""
    headers = {**cfg.headers, **(extra_headers or {})}
    # Reads wait at most a call's time (a stalled server fails the call, not the process).
    timeout = httpx2.Timeout(cfg.connect_timeout_s, read=cfg.call_timeout_s + cfg.connect_timeout_s)
    if cfg.transport == "streamable_http":
        assert cfg.url is not None
        async with (
            httpx2.AsyncClient(headers=headers, timeout=timeout) as client,
            streamable_http_client(cfg.url, http_client=client) as streams,
        ):
            yield streams[0], streams[1]
    elif cfg.transport == "sse":
        assert cfg.url is not None
        async with sse_client(
            cfg.url, headers=headers, timeout=cfg.connect_timeout_s, sse_read_timeout=cfg.call_timeout_s * 10
        ) as streams:
            yield streams[0], streams[1]
    else:
        assert cfg.command
        params = StdioServerParameters(
            command=cfg.command[0], args=list(cfg.command[1:]), env=dict(cfg.env) or None, cwd=cfg.cwd
        )
        async with stdio_client(params) as streams:
            yield streams[0], streams[1]
