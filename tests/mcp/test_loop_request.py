"""The pure parts of tool loops: MCP tool entries, function names and the loop's rounds (with a stub
MCP service and a scripted model; the real ones are in test_tool_loop.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from fluxway.canonical import JSON, CanonicalResponse, Usage
from fluxway.errors import GatewayError
from fluxway.mcp.loop import ToolLoop, offer_tools
from fluxway.mcp.loop_request import (
    ToolNames,
    check_servers,
    function_name,
    has_mcp_tool,
    parse_mcp_entry,
    split_tools,
)
from fluxway.mcp.registry import ForbiddenTool, ToolResult, ToolSpec
from fluxway.policy.hooks import Principal


def test_entries_are_checked_naming_the_field() -> None:
    entry = parse_mcp_entry({"type": "mcp", "server_label": "docs", "allowed_tools": {"tool_names": ["a"]},
                             "require_approval": {"never": {"tool_names": ["a"]}}}, 2)
    assert (entry.index, entry.server_label, entry.allowed_tools) == (2, "docs", ("a",))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "mcp"}, "tools[0].server_label"),
        ({"type": "mcp", "server_label": 3}, "tools[0].server_label"),
        ({"type": "mcp", "server_label": "d", "connector_id": "connector_gmail"}, "tools[0].connector_id"),
        ({"type": "mcp", "server_label": "d", "require_approval": {"always": {"tool_names": ["x"]}}},
         "tools[0].require_approval"),
        ({"type": "mcp", "server_label": "d", "allowed_tools": [1]}, "tools[0].allowed_tools"),
        ({"type": "mcp", "server_label": "d", "headers": {"a": "b"}}, "tools[0].headers"),
    ]
    for tool, param in cases:
        with pytest.raises(GatewayError) as err:
            parse_mcp_entry(tool, 0)
        assert err.value.status == 400 and err.value.param == param
    other, entries = split_tools([{"type": "function", "function": {"name": "f"}},
                                  {"type": "mcp", "server_label": "d"}])
    assert len(other) == 1 and entries[0].index == 1
    with pytest.raises(GatewayError) as twice:
        split_tools([{"type": "mcp", "server_label": "d"}, {"type": "mcp", "server_label": "d"}])
    assert twice.value.param == "tools[1].server_label"
    with pytest.raises(GatewayError) as unknown:
        check_servers(entries, ["docs"])
    assert unknown.value.param == "tools[1].server_label" and "docs" in unknown.value.message
    assert has_mcp_tool([{"type": "mcp"}]) and not has_mcp_tool([{"type": "function"}]) and not has_mcp_tool(None)


def test_function_names_are_provider_safe_and_map_back() -> None:
    assert function_name("docs", "search") == "docs__search"
    odd = function_name("docs", "get.page")
    assert ToolNames.valid(odd) and odd != function_name("docs", "get_page")
    long = function_name("s" * 40, "t" * 40)
    assert ToolNames.valid(long) and len(long) <= 64 and long == function_name("s" * 40, "t" * 40)
    names = ToolNames()
    fn = names.add("docs", "get.page")
    assert names.lookup(fn) == ("docs", "get.page") and fn in names and names.lookup("nope") is None


class StubService:
    def __init__(self, tools: list[ToolSpec]) -> None:
        self.tools = tools
        self.calls: list[tuple[str, Mapping[str, Any] | None]] = []

    def list_tools(self, principal: Principal) -> list[ToolSpec]:
        return [t for t in self.tools if principal.allows_tool(t.name)]

    async def call(self, principal: Principal, name: str, arguments: Mapping[str, Any] | None, **_: Any) -> ToolResult:
        self.calls.append((name, arguments))
        if not principal.allows_tool(name):
            raise ForbiddenTool(f"this API key may not call tool '{name}'")
        if name.endswith("boom"):
            raise RuntimeError("unexpected")
        return ToolResult(({"type": "text", "text": f"ran {name}"},))


def _spec(name: str) -> ToolSpec:
    return ToolSpec(f"docs.{name}", "docs", name)


def _answer(msg: JSON, prompt: int) -> CanonicalResponse:
    body = {"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]}
    return CanonicalResponse(body, Usage(prompt_tokens=prompt, completion_tokens=1))


def _call(name: str, args: Any = None, i: int = 0) -> JSON:
    return {"id": f"c{i}", "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args or {})}}


def _loop(
    service: StubService, principal: Principal, allowed: tuple[str, ...] | None = None, rounds: int = 8,
) -> ToolLoop:
    entries = [parse_mcp_entry({"type": "mcp", "server_label": "docs",
                                **({"allowed_tools": list(allowed)} if allowed else {})}, 0)]
    return ToolLoop(service, principal, offer_tools(service, principal, entries),  # type: ignore[arg-type]
                    client_functions=frozenset({"weather"}), headers={}, request_id="r", max_rounds=rounds,
                    tool_timeout_s=5)


async def test_the_loop_runs_calls_side_by_side_and_feeds_results_back() -> None:
    service = StubService([_spec("a"), _spec("b"), _spec("boom")])
    loop = _loop(service, Principal("k", mcp_tools=("docs.a", "docs.boom")))
    assert [f["function"]["name"] for f in loop.offer.functions] == ["docs__a", "docs__boom"]
    seen: list[list[JSON]] = []

    async def model(body: JSON, n: int) -> CanonicalResponse:
        seen.append(body["messages"])
        if n == 1:
            return _answer({"role": "assistant", "content": None, "tool_calls": [
                _call("docs__a", {"x": 1}, 1), _call("docs__b", {}, 2), _call("docs__boom", {}, 3),
                _call("docs__a", "{not json", 4), _call("other", {}, 5)]}, 10)
        return _answer({"role": "assistant", "content": "done"}, 20)

    events: list[str] = []

    async def on_event(kind: str, call: Any) -> None:
        events.append(f"{kind}:{call.function}")

    result = await loop.run({"messages": [{"role": "user", "content": "hi"}]}, model, on_event)
    assert result.rounds == 2 and not result.max_rounds_reached
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (30, 2)
    tool_msgs = {m["tool_call_id"]: m["content"] for m in seen[1] if m["role"] == "tool"}
    assert tool_msgs["c1"] == "ran docs.a"
    assert tool_msgs["c2"] == "Error: this API key may not call tool 'docs.b'"  # not offered, still refused
    assert tool_msgs["c3"] == "Error: the tool call failed: RuntimeError"
    assert tool_msgs["c4"] == "Error: the arguments are not valid JSON"
    assert tool_msgs["c5"].startswith("Error: unknown tool 'other'")
    assert len(events) == 10 and events.count("started:docs__a") == 2
    assert result.response.body["choices"][0]["message"]["content"] == "done"
    assert result.response.body["usage"]["prompt_tokens"] == 30
    assert [c["is_error"] for c in result.response.body["x_fluxway"]["mcp_calls"]] == [False, True, True, True, True]


async def test_allowed_tools_narrow_the_offer_and_a_client_function_ends_the_loop() -> None:
    service = StubService([_spec("a"), _spec("b")])
    loop = _loop(service, Principal("k"), allowed=("b",))
    assert [f["function"]["name"] for f in loop.offer.functions] == ["docs__b"]

    async def model(body: JSON, n: int) -> CanonicalResponse:
        if n == 1:
            return _answer({"role": "assistant", "content": None, "tool_calls": [_call("docs__a", {}, 1)]}, 1)
        return _answer({"role": "assistant", "content": None, "tool_calls": [
            _call("weather", {}, 2), _call("docs__b", {}, 3)]}, 1)

    result = await loop.run({"messages": []}, model)
    assert service.calls == []  # docs.a is not among allowed_tools: refused without calling it
    assert result.calls[0].is_error and "not among the tools offered" in (result.calls[0].error or "")
    msg = result.response.body["choices"][0]["message"]
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["weather"]  # the MCP call is dropped


async def test_max_rounds_stops_and_marks_the_last_calls_unrun() -> None:
    service = StubService([_spec("a")])
    loop = _loop(service, Principal("k"), rounds=2)

    async def model(body: JSON, n: int) -> CanonicalResponse:
        return _answer({"role": "assistant", "content": f"round {n}", "tool_calls": [_call("docs__a", {}, n)]}, 1)

    result = await loop.run({"messages": []}, model)
    assert result.rounds == 2 and result.max_rounds_reached and len(service.calls) == 1
    assert [c.status for c in result.calls] == ["completed", "incomplete"]
    msg = result.response.body["choices"][0]["message"]
    assert msg["content"] == "round 2" and "tool_calls" not in msg


async def test_the_next_round_gets_the_signed_thinking_of_the_last() -> None:
    """An Anthropic model thinking with tools refuses a round whose assistant turn lost its blocks."""
    service = StubService([_spec("a")])
    loop = _loop(service, Principal("k"))
    blocks = [{"type": "thinking", "thinking": "t", "signature": "SIG"}, {"type": "redacted_thinking", "data": "R"}]
    seen: list[list[JSON]] = []

    async def model(body: JSON, n: int) -> CanonicalResponse:
        seen.append(body["messages"])
        if n == 1:
            return _answer({"role": "assistant", "content": None, "reasoning_content": "t", "thinking_blocks": blocks,
                            "tool_calls": [_call("docs__a", {}, 1)]}, 1)
        return _answer({"role": "assistant", "content": "done"}, 1)

    await loop.run({"messages": [{"role": "user", "content": "hi"}]}, model)
    turn = seen[1][1]
    assert turn["role"] == "assistant" and turn["thinking_blocks"] == blocks and turn["reasoning_content"] == "t"


def test_stored_mcp_items_replay_as_tool_calls_and_results() -> None:
    from fluxway.ingress.responses_request import items_to_messages, normalise_items

    items = normalise_items([
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "docs", "tools": []},
        {"type": "mcp_call", "id": "mcp_1", "server_label": "docs", "name": "search", "arguments": "{}",
         "output": "found", "error": None},
        {"type": "mcp_call", "id": "mcp_2", "server_label": "docs", "name": "fail", "arguments": "{}", "output": None,
         "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": "disk full"}]}},
    ])
    messages = items_to_messages(items)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert messages[1]["tool_calls"][0] == {"id": "mcp_1", "type": "function",
                                            "function": {"name": "docs__search", "arguments": "{}"}}
    assert messages[2] == {"role": "tool", "tool_call_id": "mcp_1", "content": "found"}
    assert messages[4]["content"] == "Error: disk full"
    with pytest.raises(GatewayError) as err:
        normalise_items([{"type": "mcp_call", "id": "x", "name": "search"}])
    assert err.value.param == "input[0].server_label"
