"""The tool registry's pure logic: namespacing, per-key allowlists, refusing before looking, and
what a source's failure becomes (a tool error result, never an exception)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from fluxway.mcp.registry import ForbiddenTool, ToolRegistry, ToolResult, ToolSpec, UnknownTool
from fluxway.policy.hooks import Principal


class FakeSource:
    def __init__(self, name: str, tools: Sequence[str], *, raise_timeout: bool = False) -> None:
        self._name = name
        self._tools = [ToolSpec(name=f"{name}.{t}", source=name, local_name=t) for t in tools]
        self.raise_timeout = raise_timeout
        self.calls: list[tuple[str, Mapping[str, Any], Mapping[str, str]]] = []

    @property
    def name(self) -> str:
        return self._name

    def tools(self) -> Sequence[ToolSpec]:
        return self._tools

    async def call(
        self, tool: ToolSpec, arguments: Mapping[str, Any], *, headers: Mapping[str, str], timeout: float | None
    ) -> ToolResult:
        self.calls.append((tool.local_name, arguments, headers))
        if self.raise_timeout:
            raise TimeoutError
        return ToolResult(({"type": "text", "text": f"{tool.local_name}:{arguments}"},))

    def status(self) -> Mapping[str, Any]:
        return {"name": self._name}


def registry() -> tuple[ToolRegistry, FakeSource, FakeSource]:
    docs, files = FakeSource("docs", ["search", "echo"]), FakeSource("files", ["read", "write"])
    return ToolRegistry([docs, files]), docs, files


def test_a_key_without_an_allowlist_lists_every_tool_in_source_order() -> None:
    reg, _, _ = registry()
    names = [t.name for t in reg.list_tools(Principal(id="k"))]
    assert names == ["docs.search", "docs.echo", "files.read", "files.write"]


@pytest.mark.parametrize(("globs", "expected"), [
    ((), []),
    (("docs.*",), ["docs.search", "docs.echo"]),
    (("*.read", "docs.echo"), ["docs.echo", "files.read"]),
    (("files.rea?",), ["files.read"]),
    (("Docs.*",), []),  # globs are case-sensitive, as tool names are
])
def test_an_allowlist_lists_only_what_its_globs_match(globs: tuple[str, ...], expected: list[str]) -> None:
    reg, _, _ = registry()
    assert [t.name for t in reg.list_tools(Principal(id="k", mcp_tools=globs))] == expected


def test_a_forbidden_tool_is_refused_before_its_source_is_looked_at() -> None:
    reg, _, _ = registry()
    key = Principal(id="k", mcp_tools=("docs.*",))
    with pytest.raises(ForbiddenTool) as existing:
        reg.resolve(key, "files.read")
    with pytest.raises(ForbiddenTool) as missing:
        reg.resolve(key, "files.nothing")
    assert existing.value.code == missing.value.code == "forbidden_tool"  # does not tell which exists
    assert "files.read" in existing.value.message


@pytest.mark.parametrize("name", ["docs.nothing", "nothing.search", "search", "", "docs."])
def test_unknown_tools_are_named(name: str) -> None:
    reg, _, _ = registry()
    with pytest.raises(UnknownTool) as err:
        reg.resolve(Principal(id="k"), name)
    assert err.value.code == "unknown_tool" and repr(name)[1:-1] in err.value.message


def test_a_call_reaches_its_source_under_its_local_name() -> None:
    reg, docs, files = registry()
    result = asyncio.run(reg.call(Principal(id="k"), "docs.echo", {"text": "hi"}, headers={"x": "1"}))
    assert result.text == "echo:{'text': 'hi'}" and not result.is_error
    assert docs.calls == [("echo", {"text": "hi"}, {"x": "1"})] and files.calls == []


def test_a_timeout_becomes_a_tool_error_result() -> None:
    slow = FakeSource("slow", ["wait"], raise_timeout=True)
    result = asyncio.run(ToolRegistry([slow]).call(Principal(id="k"), "slow.wait"))
    assert result.is_error and result.failure == "timeout" and "slow.wait" in result.text


@pytest.mark.parametrize("name", ["docs", "a.b"])
def test_source_names_are_unique_and_hold_no_separator(name: str) -> None:
    reg, _, _ = registry()
    with pytest.raises(ValueError):
        reg.add(FakeSource(name, ["x"]))
