"""The ``{"type": "mcp", ...}`` entries of a request's ``tools`` (the Responses API's MCP tool, and
Fluxway's extension of chat completions): checked here, pure, before any model or tool is called.

An entry names a configured MCP server (``server_label``) and optionally which of its tools the
model may use (``allowed_tools``); Fluxway runs the tools itself, so ``require_approval`` must be
``"never"`` (or omitted). Tools are offered to the model as function tools whose names satisfy every
provider's function-name rule (``[A-Za-z0-9_-]{1,64}``): :func:`function_name` maps
``server.tool`` to one, :class:`ToolNames` maps it back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fluxway.errors import bad_request, missing_field, wrong_type

_FN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_JOIN = "__"


@dataclass(frozen=True, slots=True)
class McpToolEntry:
    """One ``{"type": "mcp"}`` entry: its index in ``tools`` and what it allows."""

    index: int
    server_label: str
    allowed_tools: tuple[str, ...] | None  # None: every tool of the server
    raw: Mapping[str, Any]  # as the caller sent it (the Responses API echoes it)


def _approval_is_never(value: Any) -> bool:
    if value is None or value == "never":
        return True
    if isinstance(value, dict) and value.keys() <= {"always", "never"}:
        always = value.get("always")
        if always is None:
            return True
        names = always.get("tool_names") if isinstance(always, dict) else None
        return isinstance(always, dict) and not names and not always.get("read_only")
    return False


def parse_mcp_entry(tool: Mapping[str, Any], index: int, param: str = "tools") -> McpToolEntry:
    """Check one ``{"type": "mcp"}`` tool; a 400 naming ``tools[i].<field>`` when it is not one
    Fluxway runs. The server label is checked against the config later (:func:`check_servers`)."""
    p = f"{param}[{index}]"
    for name in ("server_url", "connector_id", "tunnel_id"):
        if tool.get(name) is not None:
            raise bad_request(
                f"'{p}.{name}': Fluxway runs only the MCP servers configured in mcp.servers; name one with "
                "server_label instead", f"{p}.{name}", code="unsupported_parameter",
            )
    for name in ("authorization", "headers"):
        if tool.get(name):
            raise bad_request(
                f"'{p}.{name}': credentials for a configured MCP server come from its config (or its "
                "forward_headers), not from the tool", f"{p}.{name}", code="unsupported_parameter",
            )
    label = tool.get("server_label")
    if label is None:
        raise missing_field(f"{p}.server_label")
    if not isinstance(label, str) or not label:
        raise wrong_type(f"{p}.server_label", "a non-empty string (a configured MCP server's name)")
    if not _approval_is_never(tool.get("require_approval")):
        raise bad_request(
            f"'{p}.require_approval': Fluxway runs MCP tools without approval; send \"never\" (or omit it)",
            f"{p}.require_approval", code="unsupported_parameter",
        )
    allowed = tool.get("allowed_tools")
    names: tuple[str, ...] | None = None
    if allowed is not None:
        if isinstance(allowed, dict):
            if allowed.get("read_only"):
                raise bad_request(f"'{p}.allowed_tools.read_only' is not supported; list tool_names",
                                  f"{p}.allowed_tools.read_only", code="unsupported_parameter")
            allowed = allowed.get("tool_names") or []
        if not isinstance(allowed, list) or not all(isinstance(n, str) and n for n in allowed):
            raise wrong_type(f"{p}.allowed_tools", "an array of tool names")
        names = tuple(allowed)
    return McpToolEntry(index, label, names, tool)


def split_tools(tools: Sequence[Any], param: str = "tools") -> tuple[list[Any], list[McpToolEntry]]:
    """``tools`` -> (the other tools, unchanged, and the MCP entries). A server named twice: 400."""
    other: list[Any] = []
    entries: list[McpToolEntry] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") == "mcp":
            entry = parse_mcp_entry(tool, i, param)
            if entry.server_label in seen:
                raise bad_request(f"'{param}[{i}].server_label': MCP server '{entry.server_label}' is named twice",
                                  f"{param}[{i}].server_label", code="invalid_value")
            seen.add(entry.server_label)
            entries.append(entry)
        else:
            other.append(tool)
    return other, entries


def has_mcp_tool(tools: Any) -> bool:
    """The one check on the hot path: does ``tools`` hold an MCP entry at all?"""
    return isinstance(tools, list) and any(isinstance(t, dict) and t.get("type") == "mcp" for t in tools)


def check_servers(entries: Sequence[McpToolEntry], configured: Sequence[str], param: str = "tools") -> None:
    """Every entry's server_label must be a configured MCP server."""
    for e in entries:
        if e.server_label not in configured:
            known = ", ".join(configured) or "none are configured"
            raise bad_request(
                f"'{param}[{e.index}].server_label': no MCP server '{e.server_label}' is configured "
                f"(mcp.servers: {known})", f"{param}[{e.index}].server_label", code="invalid_value",
            )


def tool_function(tool: Any) -> str | None:
    """The function name of a chat tool (``{"type": "function", "function": {"name": ...}}``) or
    of a ``tool_choice`` forcing one."""
    fn = tool.get("function") if isinstance(tool, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) else None


def function_name(server: str, tool: str) -> str:
    """A provider-safe function name for ``server``'s ``tool``: ``server__tool``, unsafe characters
    as ``_``; a long one shortened with a hash of the original (deterministic, so a stored
    conversation replays under the same name)."""
    name = _UNSAFE.sub("_", f"{server}{_JOIN}{tool}")
    if len(name) > 64 or name != f"{server}{_JOIN}{tool}":
        digest = hashlib.sha256(f"{server}.{tool}".encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


class ToolNames:
    """Function names offered to the model <-> the MCP tools (``server``, local name) behind them."""

    def __init__(self) -> None:
        self._by_fn: dict[str, tuple[str, str]] = {}

    def add(self, server: str, tool: str) -> str:
        name = function_name(server, tool)
        if name in self._by_fn and self._by_fn[name] != (server, tool):  # two unsafe names met
            digest = hashlib.sha256(f"{server}.{tool}".encode()).hexdigest()[:8]
            name = f"{name[:55]}_{digest}"
        self._by_fn[name] = (server, tool)
        return name

    def lookup(self, fn: str) -> tuple[str, str] | None:
        return self._by_fn.get(fn)

    def __contains__(self, fn: object) -> bool:
        return fn in self._by_fn

    @staticmethod
    def valid(fn: str) -> bool:
        return bool(_FN_NAME.fullmatch(fn))
