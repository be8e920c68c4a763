"""The ``mcp`` config section: the upstream MCP servers whose tools Fluxway serves at ``/mcp``.

Imports only pydantic and the config base, so loading a config costs no MCP SDK.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from fluxway.config_base import Strict

# A server's name prefixes its tools' names (`docs.search`): MCP tool names allow letters, digits,
# '_', '-' and '.', so the name itself holds no '.'.
_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
# Caller headers that are Fluxway's own credentials: never forwarded upstream.
_SECRET_NAME = re.compile(r"(?i)auth|key|token|secret|password|cookie|credential")
_OWN_CREDENTIALS = frozenset({"authorization", "x-api-key", "cookie"})


class McpServerConfig(Strict):
    # The server's name: its tools are served as `<name>.<tool>`, and `mcp_tools` globs and metrics
    # name it. Letters, digits, '_' and '-'.
    name: str
    # How Fluxway reaches it: `streamable_http` (url), `sse` (url, the older HTTP+SSE transport) or
    # `stdio` (command, run as a child process of each Fluxway worker).
    transport: Literal["streamable_http", "sse", "stdio"]
    # The server's endpoint (`streamable_http`, `sse`), e.g. http://127.0.0.1:9000/mcp.
    url: str | None = None
    # The program and its arguments (`stdio`), e.g. ["python", "-m", "my_mcp_server"].
    command: tuple[str, ...] | None = None
    # Environment variables set for the `stdio` program (over a minimal default environment).
    env: dict[str, str] = Field(default_factory=dict)
    # Working directory of the `stdio` program; default: Fluxway's.
    cwd: str | None = None
    # Static request headers sent to an HTTP server (a service token, say); masked in logs and errors.
    headers: dict[str, str] = Field(default_factory=dict)
    # The caller's own credentials, forwarded per call: caller header name -> header sent upstream
    # (`{x-github-token: authorization}`). Fluxway's own credentials (authorization, x-api-key,
    # cookie) are never forwarded. A server with any opens one upstream session per call.
    forward_headers: dict[str, str] = Field(default_factory=dict)
    # Seconds to connect and list the tools before the server counts as down.
    connect_timeout_s: float = Field(10.0, gt=0, le=600)
    # Seconds one tool call may take: then it fails as a tool error.
    call_timeout_s: float = Field(60.0, gt=0, le=3600)
    # Seconds before the first reconnection attempt of a server that is down; doubled each failure.
    backoff_s: float = Field(0.5, gt=0, le=3600)
    # The cap on the reconnection backoff, in seconds.
    max_backoff_s: float = Field(30.0, gt=0, le=86400)
    # Seconds between two listings of a connected server's tools: the liveness check (a server that
    # does not answer is reconnected) and a refresh for servers that do not send list_changed.
    refresh_interval_s: float = Field(30.0, gt=0, le=3600)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _SERVER_NAME.fullmatch(v):
            raise ValueError(f"expected 1-64 letters, digits, '_' or '-' (no '.'), got {v!r}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"https?://[^/\s]+", v):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _HEADER.fullmatch(name):
                raise ValueError(f"not a header name: {name!r}")
        return v

    @field_validator("forward_headers")
    @classmethod
    def _forward(cls, v: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for caller, upstream in v.items():
            for name in (caller, upstream):
                if not _HEADER.fullmatch(name):
                    raise ValueError(f"not a header name: {name!r}")
            if caller.lower() in _OWN_CREDENTIALS:
                raise ValueError(f"'{caller}' carries the caller's Fluxway credential and is never forwarded")
            out[caller.lower()] = upstream
        return out

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServerConfig:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("a stdio server needs `command` (the program and its arguments)")
            if self.url is not None or self.headers or self.forward_headers:
                raise ValueError("a stdio server takes `command`, `env` and `cwd`, not `url` or headers")
        else:
            if self.url is None:
                raise ValueError(f"a {self.transport} server needs `url`")
            if self.command is not None or self.env or self.cwd is not None:
                raise ValueError(f"a {self.transport} server takes `url` and headers, not `command`, `env` or `cwd`")
        if self.max_backoff_s < self.backoff_s:
            raise ValueError("max_backoff_s must be at least backoff_s")
        return self

    def secrets(self) -> list[str]:
        """Values to mask wherever they could surface: static header values and the stdio
        environment's, where the name looks like a credential's."""
        out: list[str] = []
        for name, value in (*self.headers.items(), *self.env.items()):
            if _SECRET_NAME.search(name):
                out.append(value)
                out.extend(value.split()[1:])  # "Bearer <token>": the token on its own too
        return [s for s in out if s]


class McpConfig(Strict):
    """Upstream MCP servers: their tools are served, namespaced `<server>.<tool>`, at `/mcp` to the keys
    whose `mcp_tools` allow them (docs/mcp.md)."""

    # The upstream MCP servers; none: `/mcp` serves no tools and the MCP SDK is not loaded at start.
    servers: tuple[McpServerConfig, ...] = ()
    # Largest JSON-RPC request body `/mcp` accepts, in bytes.
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)

    def server(self, name: str) -> McpServerConfig | None:
        for s in self.servers:
            if s.name == name:
                return s
        return None


def mcp_problems(cfg: McpConfig) -> list[str]:
    seen: set[str] = set()
    problems: list[str] = []
    for i, s in enumerate(cfg.servers):
        if s.name in seen:
            problems.append(f"mcp.servers[{i}].name: duplicate MCP server name '{s.name}'")
        seen.add(s.name)
    return problems


class ToolLoopConfig(Strict):
    # The most model calls one tool loop makes (a chat completion or a Responses API call whose
    # `tools` name an MCP server, docs/tool-loops.md): past it the last answer is returned and the
    # MCP tool calls it still asks for are not run.
    max_rounds: int = Field(8, ge=1, le=64)
    # Seconds one MCP tool call of a loop may take (at most the server's call_timeout_s); then the
    # model is told it timed out.
    tool_timeout_s: float = Field(30.0, gt=0, le=3600)
