"""The tool registry: every tool Fluxway can run, by its public name, from every source.

A :class:`ToolSource` is one place tools come from: an upstream MCP server (:mod:`.upstream`), and
later the published prompt APIs; each is one entry of the registry. The registry answers the two
questions its consumers ask (``/mcp``, and the tool loop of chat completions and the Responses
API): which tools may this principal use (:meth:`ToolRegistry.list_tools`), and run this one
(:meth:`ToolRegistry.call`), by its namespaced name, within a timeout, returning a result or a tool
error, never raising for what the tool or its server did.

Nothing here imports the MCP SDK: tools and results are plain data (MCP's JSON shapes).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fluxway.policy.hooks import Principal

# MCP's tool-name rule (SEP-986): 1-128 of letters, digits, '_', '-' and '.'.
TOOL_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
SEPARATOR = "."  # `<source>.<tool>`: source names hold no '.'


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool as clients see it: its public (namespaced) name and its MCP description."""

    name: str  # `<source>.<tool>`
    source: str  # the source's name (an MCP server's name)
    local_name: str  # the name the source knows it by
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    description: str | None = None
    title: str | None = None
    annotations: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave: MCP content blocks (JSON dicts) and whether it is a tool error."""

    content: tuple[Mapping[str, Any], ...]
    is_error: bool = False
    structured: Mapping[str, Any] | None = None
    # Why it failed, for the call log and metrics: None (the tool ran), "tool_error" (the tool
    # said isError), "upstream_error", "unavailable", "timeout".
    failure: str | None = None

    @classmethod
    def error(cls, message: str, failure: str) -> ToolResult:
        return cls(({"type": "text", "text": message},), is_error=True, failure=failure)

    @property
    def text(self) -> str:
        """The text blocks joined (what a model is shown of the result)."""
        return "\n".join(str(c.get("text", "")) for c in self.content if c.get("type") == "text")


class ToolError(Exception):
    """The call cannot be made at all (not a tool error): an unknown or forbidden tool."""

    code = "tool_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownTool(ToolError):
    code = "unknown_tool"


class ForbiddenTool(ToolError):
    code = "forbidden_tool"


class ToolSource(Protocol):
    """One entry of the registry (an upstream MCP server; the prompt APIs)."""

    @property
    def name(self) -> str: ...

    def tools(self) -> Sequence[ToolSpec]:
        """The tools it offers (namespaced; an MCP server's last listing, kept while it is down)."""
        ...

    async def call(
        self, tool: ToolSpec, arguments: Mapping[str, Any], *, headers: Mapping[str, str], timeout: float | None
    ) -> ToolResult:
        """Run ``tool``; what the tool or its server did wrong is a tool error result, not an exception."""
        ...

    def status(self) -> Mapping[str, Any]:
        """Its state for operators (up, tools, last error), secrets masked."""
        ...


class ToolRegistry:
    """Tools by public name across sources, filtered per principal (its ``mcp_tools`` globs)."""

    def __init__(self, sources: Sequence[ToolSource] = ()) -> None:
        self._sources: dict[str, ToolSource] = {}
        for source in sources:
            self.add(source)

    def add(self, source: ToolSource) -> None:
        if SEPARATOR in source.name or source.name in self._sources:
            raise ValueError(f"tool source name {source.name!r} is taken or holds {SEPARATOR!r}")
        self._sources[source.name] = source

    @property
    def sources(self) -> Mapping[str, ToolSource]:
        return self._sources

    def list_tools(self, principal: Principal) -> list[ToolSpec]:
        """Every tool ``principal`` may list and call, in source then tool order."""
        return [t for s in self._sources.values() for t in s.tools() if principal.allows_tool(t.name)]

    def resolve(self, principal: Principal, name: str) -> tuple[ToolSource, ToolSpec]:
        """The source and spec of tool ``name``; :class:`UnknownTool` or :class:`ForbiddenTool`.
        A tool the key may not use is refused before its source is even looked at, so the answer
        does not tell whether a tool of that name exists."""
        if not principal.allows_tool(name):
            raise ForbiddenTool(f"this API key may not call tool '{name}'")
        source_name, sep, _ = name.partition(SEPARATOR)
        source = self._sources.get(source_name) if sep else None
        if source is not None:
            for tool in source.tools():
                if tool.name == name:
                    return source, tool
        raise UnknownTool(f"unknown tool '{name}'")

    async def call(
        self,
        principal: Principal,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ToolResult:
        """Run tool ``name`` for ``principal``. Raises :class:`ToolError` only when the call cannot be
        made (unknown, forbidden); anything after that, a timeout included, is a tool error result."""
        source, tool = self.resolve(principal, name)
        try:
            return await source.call(tool, arguments or {}, headers=headers or {}, timeout=timeout)
        except TimeoutError:
            return ToolResult.error(f"tool '{name}' timed out", "timeout")
        except asyncio.CancelledError:
            raise
