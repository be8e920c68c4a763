"""The MCP service of one Runtime: the upstream servers, the registry over them, and every tool call
governed the same way, whoever makes it (``/mcp``, the tool loop): the key's allowlist, its rate
limits, a log line, metrics and a usage record (endpoint ``mcp``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fluxway.errors import GatewayError
from fluxway.mcp.registry import ToolError, ToolRegistry, ToolResult, ToolSpec
from fluxway.mcp.upstream import UpstreamServer
from fluxway.policy.hooks import Principal
from fluxway.policy.limits import Bucket, applicable
from fluxway.redact import Redactor

if TYPE_CHECKING:
    from fluxway.runtime import Runtime

log = logging.getLogger("fluxway.mcp")

# What a finished call's record says, by how it ended.
_STATUS = {None: 200, "tool_error": 200, "upstream_error": 502, "unavailable": 503, "timeout": 504}


class RateLimited(ToolError):
    code = "rate_limited"


class McpService:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        redactor = Redactor.from_config(rt.cfg)
        self.upstreams = [UpstreamServer(s, redactor) for s in rt.cfg.mcp.servers]
        self.registry = ToolRegistry(self.upstreams)
        self.gateway: Any = None  # the /mcp server (fluxway.mcp.gateway), built on its first request

    def start(self) -> None:
        """Each server connects in its own task: none blocks start-up or another."""
        for server in self.upstreams:
            server.start()

    async def close(self) -> None:
        if self.gateway is not None:
            await self.gateway.close()
        await asyncio.gather(*(server.close() for server in self.upstreams))  # each bounded, side by side

    def status(self) -> list[Mapping[str, Any]]:
        return [s.status() for s in self.registry.sources.values()]

    @property
    def all_up(self) -> bool:
        return all(s.up for s in self.upstreams)

    def list_tools(self, principal: Principal) -> list[ToolSpec]:
        return self.registry.list_tools(principal)

    async def call(
        self,
        principal: Principal,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        rate_limit: bool = True,
        timeout: float | None = None,
    ) -> ToolResult:
        """Run tool ``name`` for ``principal``: :class:`ToolError` (unknown, forbidden, rate limited)
        when the call cannot be made, else its result (a tool error result when it failed)."""
        rt = self._rt
        rid = request_id or rt.next_request_id()
        started = time.perf_counter()
        try:
            _source, tool = self.registry.resolve(principal, name)
            if rate_limit:
                await self._admit(principal)
        except ToolError as err:
            rt.stats.mcp_rejections[err.code] += 1
            self._log(principal, name, None, started, err.code, err.message)
            rt.governance.usage.record_tool_call(
                request_id=rid, principal=principal, tool=name, server=None,
                status=429 if isinstance(err, RateLimited) else (403 if err.code == "forbidden_tool" else 404),
                latency_ms=(time.perf_counter() - started) * 1000.0, error=err.message,
            )
            raise
        result = await self.registry.call(principal, name, arguments, headers=headers, timeout=timeout)
        elapsed = time.perf_counter() - started
        status = result.failure or "ok"
        rt.stats.observe_tool_call(tool.source, tool.name, status, elapsed)
        self._log(principal, name, tool.source, started, status, result.text if result.is_error else None)
        rt.governance.usage.record_tool_call(
            request_id=rid, principal=principal, tool=tool.name, server=tool.source,
            status=_STATUS.get(result.failure, 200), latency_ms=elapsed * 1000.0,
            error=result.text if result.is_error else None,
        )
        return result

    async def _admit(self, principal: Principal) -> None:
        """The key's and its team's requests-per-minute limits count tool calls too."""
        specs = [(scope, rpm) for scope, rpm, _ in applicable(principal.limits, "") if ":model:" not in scope]
        buckets = [Bucket(f"{scope}|r", rpm, 1) for scope, rpm in specs if rpm is not None]
        if not buckets:
            return
        try:
            decision = await self._rt.governance.limits.backend.acquire(buckets)
        except GatewayError as err:  # Redis down with on_failure: closed
            raise RateLimited(err.message) from err
        if not decision.allowed:
            worst = max(range(len(buckets)), key=lambda i: decision.states[i].wait_s)
            b, st = buckets[worst], decision.states[worst]
            scope = b.key.rpartition("|")[0]
            raise RateLimited(
                f"rate limit exceeded for {scope}: {b.limit} requests per minute; retry in {st.wait_s:.2f}s"
            )

    def _log(
        self, principal: Principal, tool: str, server: str | None, started: float, status: str, error: str | None
    ) -> None:
        ms = (time.perf_counter() - started) * 1000.0
        level = logging.INFO if status == "ok" else logging.WARNING
        log.log(level, "mcp tool call key=%s server=%s tool=%s latency_ms=%.1f status=%s%s", principal.id,
                server or "-", tool, ms, status, f" error={error[:200]!r}" if error else "")


def start_mcp(rt: Runtime) -> McpService:
    service = McpService(rt)
    service.start()
    return service
