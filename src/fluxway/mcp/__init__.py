"""MCP: upstream MCP servers (:mod:`.upstream`), the tool registry the gateway's consumers call
(:mod:`.registry`) and Fluxway's own MCP server at ``/mcp`` (:mod:`.gateway`).

Importing this package loads nothing: the MCP SDK is imported by :mod:`.upstream` and
:mod:`.gateway`, which load only when ``mcp.servers`` is configured or ``/mcp`` is called.
"""
