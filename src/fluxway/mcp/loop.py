"""The tool loop: a chat completion or a Responses API call whose ``tools`` name MCP servers is run
by Fluxway round after round: the model is called, the MCP tools it asks for are run through
:class:`~fluxway.mcp.service.McpService` (the key's allowlist, rate limit, log, metrics and a usage
record per call), their results appended to the conversation, and the model called again, until it
answers without MCP tool calls, asks for a client function tool, or ``tool_loop.max_rounds`` model
calls have been made.

This module knows nothing of HTTP or of the hook pipeline: :class:`ToolLoop` is handed a function
that makes one governed model call (:mod:`fluxway.api.tool_loop_call` gives it one) and reports each
tool call as it starts and ends, for a stream to show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from fluxway.canonical import JSON, CanonicalResponse, Usage
from fluxway.ingress.responses_request import new_id
from fluxway.mcp.loop_request import McpToolEntry, ToolNames
from fluxway.mcp.registry import SEPARATOR, ToolError, ToolResult, ToolSpec
from fluxway.policy.hooks import Principal

if TYPE_CHECKING:
    from fluxway.mcp.service import McpService

_NOT_RUN = "not run: the tool loop reached tool_loop.max_rounds ({n}) model calls"


@dataclass(slots=True)
class Listing:
    """The tools of one MCP entry the model is offered (an ``mcp_list_tools`` item)."""

    id: str
    server_label: str
    tools: list[ToolSpec]


@dataclass(slots=True)
class Offer:
    """What the model is offered: function tools, their names' mapping, and the listings."""

    functions: list[JSON]
    names: ToolNames
    listings: list[Listing]
    entries: Sequence[McpToolEntry]


@dataclass(slots=True)
class ToolCall:
    """One MCP tool call the model asked for, and how it went (an ``mcp_call`` item)."""

    id: str  # mcp_...
    call_id: str  # the model's tool call id
    server_label: str
    name: str  # the tool's name on its server
    function: str  # the function name the model called
    arguments: str  # JSON text, as the model sent it
    output: str | None = None
    is_error: bool = False
    error: str | None = None  # why it failed (the text the model was shown)
    run: bool = True  # False: left unrun (max_rounds)
    offered: bool = True  # False: a function name the model invented

    @property
    def status(self) -> str:
        if not self.run:
            return "incomplete"
        return "failed" if self.is_error else "completed"

    def result_text(self) -> str:
        """What the model is shown as the tool's result."""
        if self.is_error:
            return f"Error: {self.error or self.output or 'the tool failed'}"
        return self.output or ""


@dataclass(slots=True)
class LoopResult:
    response: CanonicalResponse  # the final answer, its usage the sum of every round's
    calls: list[ToolCall]
    rounds: int
    max_rounds_reached: bool
    usage: Usage = field(default_factory=Usage)


def offer_tools(service: McpService, principal: Principal, entries: Sequence[McpToolEntry]) -> Offer:
    """The function tools the model is offered: each entry's server's tools, cut to its
    ``allowed_tools`` and to the key's ``mcp_tools`` allowlist."""
    names = ToolNames()
    functions: list[JSON] = []
    listings: list[Listing] = []
    visible = service.list_tools(principal)
    for e in entries:
        specs = [t for t in visible if t.source == e.server_label
                 and (e.allowed_tools is None or t.local_name in e.allowed_tools)]
        listings.append(Listing(new_id("mcpl"), e.server_label, specs))
        for spec in specs:
            fn: JSON = {"name": names.add(spec.source, spec.local_name),
                        "parameters": dict(spec.input_schema) or {"type": "object", "properties": {}}}
            desc = spec.description or spec.title
            if desc:
                fn["description"] = desc
            functions.append({"type": "function", "function": fn})
    return Offer(functions, names, listings, entries)


def result_text(result: ToolResult) -> str:
    """A tool result as the model reads it: its text blocks, else its structured or other blocks as JSON."""
    text = result.text
    if text or (not result.content and result.structured is None):
        return text
    if result.structured is not None:
        return orjson.dumps(dict(result.structured)).decode()
    return orjson.dumps(list(result.content)).decode()


def _message(resp: CanonicalResponse) -> JSON:
    choices = resp.body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        msg = choices[0].get("message")
        if isinstance(msg, dict):
            return msg
    return {}


def _fn(call: Any) -> tuple[str, str]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict):
        return "", "{}"
    args = fn.get("arguments")
    return str(fn.get("name") or ""), args if isinstance(args, str) else orjson.dumps(args or {}).decode()


class ToolLoop:
    def __init__(
        self,
        service: McpService,
        principal: Principal,
        offer: Offer,
        *,
        client_functions: frozenset[str],
        headers: Mapping[str, str],
        request_id: str,
        max_rounds: int,
        tool_timeout_s: float,
    ) -> None:
        self._service = service
        self._principal = principal
        self.offer = offer
        self._client = client_functions
        self._headers = headers
        self._request_id = request_id
        self._max_rounds = max_rounds
        self._timeout = tool_timeout_s
        self._labels = {e.server_label: e for e in offer.entries}

    def _classify(self, call: Any) -> ToolCall | None:
        """An MCP tool call (known, or one the model invented), or None for a client function."""
        name, args = _fn(call)
        if name in self._client and name not in self.offer.names:
            return None
        call_id = str(call.get("id") or new_id("call")) if isinstance(call, dict) else new_id("call")
        found = self.offer.names.lookup(name)
        if found is not None:
            return ToolCall(new_id("mcp"), call_id, found[0], found[1], name, args)
        server, sep, tool = name.partition("__")
        if sep and server in self._labels:  # `<server>__<tool>`: a tool of a named server, not offered
            return ToolCall(new_id("mcp"), call_id, server, tool, name, args, offered=False)
        return ToolCall(new_id("mcp"), call_id, "", name, name, args, offered=False)  # no server of ours

    async def _run(self, call: ToolCall, on_event: Callable[[str, ToolCall], Awaitable[None]] | None) -> None:
        if on_event is not None:
            await on_event("started", call)
        try:
            await self._execute(call)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never a 500: the model reads what went wrong
            call.is_error, call.output, call.error = True, None, f"the tool call failed: {type(exc).__name__}"
        if on_event is not None:
            await on_event("done", call)

    async def _execute(self, call: ToolCall) -> None:
        if not call.offered:  # a function the model invented
            entry = self._labels.get(call.server_label)
            if entry is not None and call.function.startswith(f"{call.server_label}__") and (
                entry.allowed_tools is None or call.name in entry.allowed_tools
            ):
                public = f"{call.server_label}{SEPARATOR}{call.name}"
            else:
                call.is_error, call.error = True, f"unknown tool '{call.function}': it is not among the tools offered"
                return
        else:
            public = f"{call.server_label}{SEPARATOR}{call.name}"
        try:
            args = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            call.is_error, call.error = True, "the arguments are not valid JSON"
            return
        if not isinstance(args, dict):
            call.is_error, call.error = True, "the arguments must be a JSON object"
            return
        try:
            async with asyncio.timeout(self._timeout + 1.0):  # the upstream's own limit comes first
                result = await self._service.call(
                    self._principal, public, args, headers=self._headers, request_id=self._request_id,
                    timeout=self._timeout,
                )
        except ToolError as err:
            call.is_error, call.error = True, err.message
            return
        except TimeoutError:
            call.is_error, call.error = True, f"tool '{public}' timed out after {self._timeout:g}s"
            return
        text = result_text(result)
        if result.is_error:
            call.is_error, call.error, call.output = True, text or "the tool failed", None
        else:
            call.is_error, call.error, call.output = False, None, text

    async def run(
        self,
        body: JSON,
        call_model: Callable[[JSON, int], Awaitable[CanonicalResponse]],
        on_event: Callable[[str, ToolCall], Awaitable[None]] | None = None,
    ) -> LoopResult:
        """Round after round until an answer without MCP tool calls (or max_rounds)."""
        messages = list(body.get("messages") or [])
        total = Usage()
        calls: list[ToolCall] = []
        rounds = 0
        while True:
            rounds += 1
            resp = await call_model({**body, "messages": messages}, rounds)
            total.add(resp.usage)
            msg = _message(resp)
            raw_calls = msg.get("tool_calls")
            if not isinstance(raw_calls, list) or not raw_calls:
                return self._finish(resp, calls, rounds, total, False)
            classified = [self._classify(c) for c in raw_calls]
            mine = [c for c in classified if c is not None]
            if not mine:
                return self._finish(resp, calls, rounds, total, False)
            if len(mine) < len(classified) or rounds >= self._max_rounds:
                # A client function among them (its call goes back to the client, the MCP ones
                # are dropped), or the last round allowed: the MCP calls are not run.
                reached = len(mine) == len(classified)
                for c in mine:
                    c.run, c.is_error, c.error = False, True, _NOT_RUN.format(n=self._max_rounds)
                calls.extend(mine if reached else [])
                if reached and on_event is not None:
                    for c in mine:
                        await on_event("skipped", c)
                return self._finish(resp, calls, rounds, total, reached)
            await asyncio.gather(*(self._run(c, on_event) for c in mine))
            calls.extend(mine)
            turn: JSON = {"role": "assistant", "content": msg.get("content") or None, "tool_calls": [
                {"id": c.call_id, "type": "function", "function": {"name": c.function, "arguments": c.arguments}}
                for c in mine
            ]}
            for key in ("reasoning_content", "thinking_blocks"):  # signed thinking must come back whole
                if msg.get(key):
                    turn[key] = msg[key]
            messages.append(turn)
            messages.extend({"role": "tool", "tool_call_id": c.call_id, "content": c.result_text()} for c in mine)

    def _finish(
        self, resp: CanonicalResponse, calls: list[ToolCall], rounds: int, total: Usage, reached: bool
    ) -> LoopResult:
        body = dict(resp.body)
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = dict(choices[0])
            msg = dict(choice.get("message") or {})
            raw = msg.get("tool_calls")
            if isinstance(raw, list):
                kept = [c for c in raw if self._classify(c) is None]
                if kept:
                    msg["tool_calls"] = kept
                else:
                    msg.pop("tool_calls", None)
                    if choice.get("finish_reason") == "tool_calls":
                        choice["finish_reason"] = "stop"
            choice["message"] = msg
            body["choices"] = [choice, *choices[1:]]
        body["usage"] = total.to_openai()
        extra: JSON = {"mcp_calls": [
            {"name": f"{c.server_label}{SEPARATOR}{c.name}" if c.server_label else c.name, "arguments": c.arguments,
             "output": c.output if not c.is_error else c.error, "is_error": c.is_error}
            for c in calls
        ], "tool_loop": {"rounds": rounds, "max_rounds_reached": reached}}
        body["x_fluxway"] = {**(body.get("x_fluxway") or {}), **extra}
        return LoopResult(CanonicalResponse(body, total), calls, rounds, reached, total)
