"""One upstream MCP server: kept connected in the background, its tools listed (and listed again on
``notifications/tools/list_changed``), its tools called through the MCP SDK's ``ClientSession``.

A server that is down at start, or goes away later, is reported (its status, a log line, the
``fluxway_mcp_server_up`` gauge) and reconnected with exponential backoff in its own task: it never
blocks start-up or the other servers, and calls to it fail as tool errors until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from fluxway.mcp.registry import SEPARATOR, TOOL_NAME, ToolResult, ToolSpec
from fluxway.mcp.settings import McpServerConfig
from fluxway.mcp.transports import open_streams
from fluxway.redact import Redactor

log = logging.getLogger("fluxway.mcp")
_CLOSE_S = 3.0  # seconds a server's session may take to close at shutdown

_MAX_PAGES = 100  # tools/list pages read at most (a server paging forever cannot hold us)


class ConnectionLost(Exception):
    """The upstream session stopped answering."""


def _describe(exc: BaseException) -> str:
    """A one-line reason, the first leaf of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _spec(server: str, tool: types.Tool) -> ToolSpec:
    return ToolSpec(
        name=f"{server}{SEPARATOR}{tool.name}",
        source=server,
        local_name=tool.name,
        input_schema=dict(tool.input_schema or {"type": "object"}),
        description=tool.description,
        title=tool.title,
        annotations=tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
        if tool.annotations is not None
        else None,
        output_schema=dict(tool.output_schema) if tool.output_schema is not None else None,
    )


def _result(res: types.CallToolResult) -> ToolResult:
    content = tuple(c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in res.content)
    return ToolResult(
        content, is_error=bool(res.is_error), structured=res.structured_content,
        failure="tool_error" if res.is_error else None,
    )


async def list_all_tools(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


class UpstreamServer:
    """A :class:`~fluxway.mcp.registry.ToolSource` for one configured MCP server."""

    def __init__(self, cfg: McpServerConfig, redactor: Redactor) -> None:
        self.cfg = cfg
        self._redact = redactor
        self._session: ClientSession | None = None
        self._tools: tuple[ToolSpec, ...] = ()
        self._wake = asyncio.Event()  # a list_changed or a lost connection: the keeper looks
        self._refresh = False
        self._lost = False
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.up = False
        self.last_error: str | None = None
        self.connects = 0  # sessions opened
        self.failures = 0  # connection attempts that failed, and sessions lost
        self.since: float | None = None  # when it last came up or went down (time.time())
        self.next_retry_s: float | None = None

    @property
    def name(self) -> str:
        return self.cfg.name

    def tools(self) -> Sequence[ToolSpec]:
        """What it offers: the last listing, kept while it is down (empty until it first came up)."""
        return self._tools

    def status(self) -> Mapping[str, Any]:
        return {
            "name": self.name, "transport": self.cfg.transport, "up": self.up, "tools": len(self._tools),
            "connects": self.connects, "failures": self.failures, "last_error": self.last_error,
            "since": self.since, "next_retry_s": self.next_retry_s,
        }

    # the keeper ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep(), name=f"fluxway-mcp-{self.name}")

    async def wait_connected(self, timeout: float) -> bool:
        """True once the server is up (tests and start-up diagnostics; nothing waits on it)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        return self.up

    async def close(self) -> None:
        """Stop the keeper; a session that does not wind down within ``_CLOSE_S`` (an upstream not
        answering the SDK's goodbye) is left behind rather than holding up the gateway's shutdown."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=_CLOSE_S)
        if not done:
            log.warning("mcp server %s: its session did not close within %.0f s; left behind", self.cfg.name, _CLOSE_S)
            return
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()

    async def _keep(self) -> None:
        delay = self.cfg.backoff_s
        while True:
            started = False
            try:
                started = await self._session_lifetime()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # an ExceptionGroup from the SDK's task groups, too
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                self._went_down(_describe(exc))
            else:
                self._went_down("the connection closed")
            if started:
                delay = self.cfg.backoff_s
            wait = delay * random.uniform(0.8, 1.2)
            self.next_retry_s = round(wait, 3)
            log.warning("MCP server '%s' unavailable (%s); retrying in %.1fs", self.name, self.last_error, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.cfg.max_backoff_s)

    def _went_down(self, reason: str) -> None:
        self._session = None
        self._connected.clear()
        self.failures += 1
        self.last_error = self._redact.text(reason)
        if self.up:
            self.since = time.time()
        self.up = False
        # The last tools listed stay known: a call to one fails as a tool error ("unavailable")
        # rather than as an unknown tool, and clients' tool lists stay valid across an outage.

    async def _session_lifetime(self) -> bool:
        """Connect, list the tools, then watch the session until it is lost; True if it came up."""
        self._lost = self._refresh = False
        self._wake.clear()
        async with contextlib.AsyncExitStack() as stack:
            # The SDK's task groups are entered outside any timeout's cancel scope (they outlive it).
            read, write = await stack.enter_async_context(open_streams(self.cfg))
            session = await stack.enter_async_context(ClientSession(read, write, message_handler=self._on_message))
            with anyio.fail_after(self.cfg.connect_timeout_s):
                await session.initialize()
                self._install(await list_all_tools(session))
            self._session = session
            self.connects += 1
            self.up = True
            self.since = time.time()
            self.last_error = None
            self.next_retry_s = None
            self._connected.set()
            log.info("MCP server '%s' connected: %d tools", self.name, len(self._tools))
            await self._watch(session)
        return True

    async def _watch(self, session: ClientSession) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cfg.refresh_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._lost:
                raise ConnectionLost("the session stopped answering")
            # A list_changed asked for it; otherwise the periodic listing is the liveness check and
            # catches a change on a server that does not announce its changes.
            announced, self._refresh = self._refresh, False
            before = {t.name for t in self._tools}
            with anyio.fail_after(self.cfg.connect_timeout_s):
                self._install(await list_all_tools(session))
            if announced or before != {t.name for t in self._tools}:
                log.info("MCP server '%s' tools changed: %d tools", self.name, len(self._tools))

    def _install(self, tools: list[types.Tool]) -> None:
        specs = []
        for tool in tools:
            spec = _spec(self.name, tool)
            if TOOL_NAME.fullmatch(spec.name):
                specs.append(spec)
            else:
                log.warning("MCP server '%s': tool %r skipped (not a valid MCP tool name once namespaced)",
                            self.name, tool.name)
        self._tools = tuple(specs)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self._lost = True
            self._wake.set()
        elif isinstance(message, types.ToolListChangedNotification):
            self._refresh = True
            self._wake.set()

    # calls --------------------------------------------------------------------------------

    async def call(
        self, tool: ToolSpec, arguments: Mapping[str, Any], *, headers: Mapping[str, str], timeout: float | None
    ) -> ToolResult:
        limit = min(timeout, self.cfg.call_timeout_s) if timeout is not None else self.cfg.call_timeout_s
        try:
            if self.cfg.forward_headers:
                res = await self._call_forwarding(tool, arguments, headers, limit)
            else:
                session = self._session
                if session is None:
                    why = f": {self.last_error}" if self.last_error else ""
                    return ToolResult.error(f"MCP server '{self.name}' is unavailable{why}", "unavailable")
                with anyio.fail_after(limit):
                    res = await session.call_tool(tool.local_name, dict(arguments))
        except TimeoutError:
            return ToolResult.error(f"tool '{tool.name}' timed out after {limit:g}s", "timeout")
        except MCPError as exc:  # the server answered with a JSON-RPC error: the session is fine
            return ToolResult.error(self._redact.text(f"MCP server '{self.name}': {exc}"), "upstream_error")
        except Exception as exc:
            if not self.cfg.forward_headers:
                self._lost = True  # the keeper checks the session and reconnects
                self._wake.set()
            return ToolResult.error(
                self._redact.text(f"MCP server '{self.name}' failed: {_describe(exc)}"), "upstream_error"
            )
        if res.is_error:
            res.content = [_redacted_block(c, self._redact) for c in res.content]
        return _result(res)

    async def _call_forwarding(
        self, tool: ToolSpec, arguments: Mapping[str, Any], headers: Mapping[str, str], limit: float
    ) -> types.CallToolResult:
        """A session of its own, carrying the caller's forwarded credentials."""
        extra = {up: headers[caller] for caller, up in self.cfg.forward_headers.items() if caller in headers}
        async with (
            open_streams(self.cfg, extra) as (read, write),
            ClientSession(read, write) as session,
        ):
            with anyio.fail_after(limit):
                await session.initialize()
                return await session.call_tool(tool.local_name, dict(arguments))


def _redacted_block(block: Any, redactor: Redactor) -> Any:
    if isinstance(block, types.TextContent):
        return block.model_copy(update={"text": redactor.text(block.text)})
    return block
