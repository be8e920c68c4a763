"""A real MCP server (the official SDK's ``MCPServer``) for the MCP tests and the bench:
``python -m tests.support.mcp_server stdio`` or ``... http PORT`` (streamable HTTP at /mcp).

Its tools: ``search`` and ``echo`` answer from their arguments, ``fail`` raises (a tool error with
its message), ``leak`` fails with a message holding the ``MCP_TEST_SECRET`` env value, ``slow``
sleeps, ``whoami`` tells which ``x-upstream-token`` header reached it, and ``grow`` adds a tool
``extra`` and announces it with ``notifications/tools/list_changed``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build(name: str) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(name)

    @server.tool(description="Search the documents for a query.")
    def search(query: str) -> str:
        return f"{name} results for {query!r}"

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Always fails.")
    def fail(message: str = "it broke") -> str:
        raise ToolError(message)

    @server.tool(description="Fails with a message holding a secret.")
    def leak() -> str:
        raise ToolError(f"upstream db password is {os.environ.get('MCP_TEST_SECRET', '')}")

    @server.tool(description="Sleeps, then answers.")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @server.tool(description="The x-upstream-token header this server received.")
    def whoami(ctx: Context) -> str:
        request = ctx.request_context.request
        headers = getattr(request, "headers", None)
        return str(headers.get("x-upstream-token", "(none)")) if headers is not None else "(no http)"

    @server.tool(description="Adds the tool 'extra' and announces the change.")
    async def grow(ctx: Context) -> str:
        def extra() -> str:
            return "extra!"

        server.add_tool(extra, name="extra", description="Added at run time.")
        await ctx.session.send_tool_list_changed()  # the handshake era's notification
        return "grown"

    return server


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else "stdio"
    name = os.environ.get("MCP_TEST_NAME", "files" if mode == "stdio" else "docs")
    server = build(name)
    if mode == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(argv[1]), stateless_http=False)


if __name__ == "__main__":
    main(sys.argv[1:])
