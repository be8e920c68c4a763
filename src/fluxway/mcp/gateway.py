"""``/mcp``: Fluxway as an MCP server (streamable HTTP, the MCP SDK's server side), serving the
tools of the configured MCP servers that the calling key may use, namespaced ``<server>.<tool>``.

Every request is authenticated with a Fluxway key (``Authorization: Bearer``) before the SDK sees
it; the SDK runs stateless (each POST stands alone, so any worker of any instance can answer it) and
answers JSON. ``tools/list`` shows only the key's tools; ``tools/call`` goes through
:class:`~fluxway.mcp.service.McpService` (allowlist, rate limits, log, metrics, usage record).
Unknown and forbidden tools and rate-limited calls are JSON-RPC errors; what an upstream server or
its tool did wrong is a tool result with ``isError`` and the upstream's message, secrets masked.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import mcp_types as types
import orjson
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from fluxway import __version__
from fluxway.api.asgi import JSON_CT, Receive, Scope, Send, request_headers, respond
from fluxway.errors import GatewayError, openai_error_body
from fluxway.ingress.base import bearer_token
from fluxway.mcp.registry import ForbiddenTool, ToolError, ToolSpec, UnknownTool
from fluxway.mcp.service import McpService, RateLimited
from fluxway.policy.hooks import Principal

PRINCIPAL = "fluxway.mcp.principal"  # the caller, put in the ASGI scope for the handlers
REQUEST_ID = "fluxway.mcp.request_id"
# JSON-RPC error codes: -32602 (invalid params) is MCP's for an unknown tool; the others are
# server-defined (-32000..-32099).
UNKNOWN_TOOL = -32602
FORBIDDEN_TOOL = -32003
RATE_LIMITED = -32029


def _tool(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=dict(spec.input_schema),
        output_schema=dict(spec.output_schema) if spec.output_schema is not None else None,
        annotations=types.ToolAnnotations.model_validate(spec.annotations) if spec.annotations else None,
    )


def _error_code(err: ToolError) -> int:
    if isinstance(err, UnknownTool):
        return UNKNOWN_TOOL
    if isinstance(err, ForbiddenTool):
        return FORBIDDEN_TOOL
    if isinstance(err, RateLimited):
        return RATE_LIMITED
    return -32000


class McpGateway:
    """The ASGI handler of ``/mcp`` for one Runtime; :meth:`start` runs the SDK's session manager."""

    def __init__(self, service: McpService, request_id: Any, max_body_bytes: int) -> None:
        self._service = service
        self._next_id = request_id
        self.server: Server[Any] = Server(
            "fluxway", version=__version__, on_list_tools=self._list_tools, on_call_tool=self._call_tool,
            instructions="Tools of the MCP servers configured in Fluxway, named <server>.<tool>.",
        )
        self._manager = StreamableHTTPSessionManager(
            self.server, json_response=True, stateless=True, max_request_body_size=max_body_bytes,
            session_idle_timeout=None,
        )
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        ready = asyncio.Event()

        async def run() -> None:
            async with self._manager.run():
                ready.set()
                await self._stop.wait()

        self._task = asyncio.create_task(run(), name="fluxway-mcp-gateway")
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            waiter.cancel()
            self._task.result()  # raises what stopped it

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
            self._task = None

    async def handle(self, principal: Principal, scope: Scope, receive: Receive, send: Send) -> None:
        scope[PRINCIPAL] = principal
        scope[REQUEST_ID] = self._next_id()
        await self._manager.handle_request(scope, receive, send)

    # handlers -----------------------------------------------------------------------------

    @staticmethod
    def _caller(ctx: Any) -> tuple[Principal, dict[str, str], str | None]:
        request = ctx.request
        scope = getattr(request, "scope", None) or {}
        principal = scope.get(PRINCIPAL)
        if not isinstance(principal, Principal):  # never reached: handle() always sets it
            raise MCPError(code=-32001, message="unauthenticated")
        return principal, request_headers(scope), scope.get(REQUEST_ID)

    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        principal, _, _ = self._caller(ctx)
        return types.ListToolsResult(tools=[_tool(t) for t in self._service.list_tools(principal)])

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        principal, headers, request_id = self._caller(ctx)
        try:
            result = await self._service.call(
                principal, params.name, params.arguments, headers=headers, request_id=request_id
            )
        except ToolError as err:
            raise MCPError(code=_error_code(err), message=err.message) from None
        wire: dict[str, Any] = {"content": list(result.content), "isError": result.is_error}
        if result.structured is not None:
            wire["structuredContent"] = dict(result.structured)
        try:
            return types.CallToolResult.model_validate(wire)
        except ValueError:  # a block this SDK does not know: shown as its JSON text
            blocks = [{"type": "text", "text": orjson.dumps(b).decode()} for b in result.content]
            return types.CallToolResult.model_validate({"content": blocks, "isError": result.is_error})


async def serve_mcp(rt: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """The ``/mcp`` route: authenticate, then hand the request to the SDK."""
    headers = request_headers(scope)
    try:
        principal = await rt.principal(bearer_token(headers) or headers.get("x-api-key"))
    except GatewayError as err:
        extra = [(b"www-authenticate", b'Bearer realm="fluxway"')] if err.status == 401 else []
        await respond(send, err.status, orjson.dumps(openai_error_body(err)), [JSON_CT, *extra])
        return
    gateway = await rt.mcp_gateway()
    await gateway.handle(principal, scope, receive, send)
