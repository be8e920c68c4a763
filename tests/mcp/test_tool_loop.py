"""Tool loops end to end: the official openai SDK -> Fluxway (chat completions and the Responses API
with MCP tools) -> a scripted OpenAI-compatible model, with real MCP servers (streamable HTTP in a
subprocess, stdio as Fluxway's child) running the tools."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from tests.mcp.upstreams import HttpMcpServer, stdio_server
from tests.support.gateway import Gateway, run_gateway
from tests.support.ports import free_port
from tests.support.replies import json_reply
from tests.support.responses_schema import check_events, check_response
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-loop"
DOCS: Any = {"type": "mcp", "server_label": "docs", "require_approval": "never"}
FILES: Any = {"type": "mcp", "server_label": "files"}
WEATHER: Any = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}


def _tool_call(i: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call_{i}_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def _chunk(n: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _frames(n: int, content: str | None, calls: list[dict[str, Any]] | None) -> list[bytes]:
    """A round as an OpenAI-compatible stream: the text word by word, each tool call's arguments in
    two pieces after its name, the finish reason, then the usage."""
    frames = [_chunk(n, {"role": "assistant", "content": ""})]
    frames += [_chunk(n, {"content": word}) for word in re.findall(r"\S+\s*", content or "")]
    for i, call in enumerate(calls or ()):
        args = call["function"]["arguments"]
        frames.append(_chunk(n, {"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        frames += [_chunk(n, {"tool_calls": [{"index": i, "function": {"arguments": part}}]})
                   for part in (args[: len(args) // 2], args[len(args) // 2:])]
    frames.append(_chunk(n, {}, "tool_calls" if calls else "stop"))
    usage = {"prompt_tokens": 10 * n, "completion_tokens": n, "total_tokens": 11 * n}
    frames.append(b"data: " + orjson.dumps({"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1,
                                            "model": "gpt-4o-mini", "choices": [], "usage": usage}) + b"\n\n")
    return [*frames, b"data: [DONE]\n\n"]


async def _reply(
    request: web.Request, n: int, content: str | None = None, calls: list[dict[str, Any]] | None = None,
    gate: Gate | None = None,
) -> web.StreamResponse:
    """The round's answer, whole or streamed as the request asks; ``gate``: the stream stops after
    its first word until the test opens it (or cuts it there, ``gate.cut``)."""
    body = await request.json()
    if not body.get("stream"):
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            msg["tool_calls"] = calls
        return json_reply({
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": 10 * n, "completion_tokens": n, "total_tokens": 11 * n},
        })
    frames = _frames(n, content, calls)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    for i, frame in enumerate(frames):
        await resp.write(frame)
        if gate is not None and i == 1:  # the first word is out
            if gate.cut:
                assert request.transport is not None
                request.transport.close()  # the upstream dies mid-stream
                return resp
            try:
                await asyncio.wait_for(gate.opened.wait(), 10)
            except TimeoutError:
                gate.timed_out = True
    await resp.write_eof()
    return resp


class Gate:
    """Holds a streamed answer after its first word until the client has seen that word."""

    def __init__(self, cut: bool = False) -> None:
        self.opened = asyncio.Event()
        self.timed_out = False
        self.cut = cut


async def model(request: web.Request, docs: HttpMcpServer | None = None,
                gates: dict[str, Gate] | None = None) -> web.StreamResponse:
    """Scripted by the first user message; it sees the tool results in the messages."""
    body = await request.json()
    messages = body["messages"]
    user = next(m["content"] for m in messages if m["role"] == "user")
    user = user if isinstance(user, str) else "".join(p.get("text", "") for p in user)
    results = [m["content"] for m in messages if m["role"] == "tool"]
    n = len([m for m in messages if m["role"] == "assistant"]) + 1  # this round
    offered = sorted(t["function"]["name"] for t in body.get("tools") or ())
    if "tools?" in user:
        return await _reply(request, n, "offered: " + ",".join(offered))
    plans: dict[str, list[list[dict[str, Any]]]] = {
        "search": [[_tool_call(1, "docs__search", {"query": "mcp"})]],
        "two rounds": [[_tool_call(1, "docs__search", {"query": "a"})], [_tool_call(2, "files__echo", {"text": "b"})]],
        "parallel": [[_tool_call(1, "docs__search", {"query": "p"}), _tool_call(2, "files__echo", {"text": "q"})]],
        "fail": [[_tool_call(1, "docs__fail", {"message": "disk full"})]],
        "invent": [[_tool_call(1, "docs__nothing", {}), _tool_call(2, "made_up", {})]],
        "forbidden": [[_tool_call(1, "docs__search", {"query": "x"})]],
        "slow": [[_tool_call(1, "docs__slow", {"seconds": 10})]],
        "client": [[_tool_call(1, "weather", {})]],
        "mixed": [[_tool_call(1, "docs__search", {"query": "m"}), _tool_call(2, "weather", {})]],
        "forever": [[_tool_call(i, "docs__search", {"query": str(i)})] for i in range(1, 20)],
    }
    if "upstream dies" in user and n == 2:
        return json_reply({"error": {"message": "boom", "type": "server_error"}}, status=500)
    if "upstream dies" in user:
        return await _reply(request, n, None, [_tool_call(1, "docs__search", {"query": "q"})])
    if "kill" in user and n == 1 and docs is not None:  # the MCP server dies mid-run, before the call
        await asyncio.to_thread(docs.kill)
        return await _reply(request, n, None, [_tool_call(1, "docs__search", {"query": "gone"})])
    plan = next((v for k, v in plans.items() if k in user), [])
    said = "Let me look that up. " if "talk" in user else None  # text beside the tool calls
    if n <= len(plan):
        return await _reply(request, n, said, plan[n - 1])
    gate = next((g for k, g in (gates or {}).items() if k in user), None)
    return await _reply(request, n, "answer: " + " | ".join(results), gate=gate)


def config(tmp_path: Path, docs: HttpMcpServer, up: FakeUpstream, **loop: Any) -> dict[str, Any]:
    fast = {"backoff_s": 0.1, "max_backoff_s": 0.3, "connect_timeout_s": 10}
    return {
        "auth": {"master_key": MASTER},
        "store": {"url": f"sqlite:///{tmp_path}/fluxway.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 50},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "retry": {"attempts": 1}, "targets": [
            {"provider": "up", "model": "gpt-4o-mini", "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}]}],
        "mcp": {"servers": [
            {"name": "docs", "transport": "streamable_http", "url": docs.url, **fast, "call_timeout_s": 5},
            stdio_server("files", **fast),
        ]},
        "tool_loop": {"max_rounds": 4, "tool_timeout_s": 1, **loop},
    }


@pytest.fixture
def gates() -> dict[str, Gate]:
    """The streamed answers held after their first word (by a word of the user's message)."""
    return {"held": Gate(), "cut short": Gate(cut=True), "leaves": Gate()}


@pytest.fixture
async def setup(tmp_path: Path, gates: dict[str, Gate]) -> AsyncIterator[tuple[Gateway, HttpMcpServer, FakeUpstream]]:
    docs = HttpMcpServer(free_port())
    await asyncio.to_thread(docs.start)
    try:
        async with FakeUpstream() as up:
            up.route("POST", "/v1/chat/completions", lambda r: model(r, docs, gates))
            async with run_gateway(config(tmp_path, docs, up)) as gw:
                service = gw.runtime.mcp
                assert service is not None
                for server in service.upstreams:
                    assert await server.wait_connected(20), server.status()
                yield gw, docs, up
    finally:
        for gate in gates.values():
            gate.opened.set()
        docs.kill()


def client(gw: Gateway, key: str = MASTER) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


async def admin(gw: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s, \
            s.request(method, gw.url + path, json=body) as r:
        return r.status, await r.json()


async def new_key(gw: Gateway, **fields: Any) -> str:
    status, created = await admin(gw, "POST", "/admin/keys", {"name": "k", **fields})
    assert status in (200, 201), created
    return str(created["key"])


async def records(gw: Gateway) -> list[dict[str, Any]]:
    await gw.runtime.governance.usage.flush()
    status, logs = await admin(gw, "GET", "/admin/logs?limit=200")
    assert status == 200
    return list(logs["data"])


def ask(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# -- chat completions ---------------------------------------------------------------------------------


async def test_chat_runs_the_tool_and_sums_usage_with_a_record_per_round(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, up = setup
    key = await new_key(gw)
    done = await client(gw, key).chat.completions.create(
        model="smart", messages=ask("search please"), tools=[DOCS],
    )
    assert done.choices[0].message.content == "answer: docs results for 'mcp'"
    assert done.choices[0].message.tool_calls is None and done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (10 + 20, 1 + 2)
    extra = (done.model_extra or {})["x_fluxway"]
    assert extra["mcp_calls"] == [{"name": "docs.search", "arguments": '{"query": "mcp"}',
                                   "output": "docs results for 'mcp'", "is_error": False}]
    assert extra["tool_loop"] == {"rounds": 2, "max_rounds_reached": False}
    # The model was offered the server's tools as functions, and saw the result in round 2.
    first, second = (r.json() for r in up.requests[-2:])
    names = {t["function"]["name"] for t in first["tools"]}
    assert {"docs__search", "docs__echo", "docs__fail"} <= names and not any(n.startswith("files") for n in names)
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1_docs__search",
                                      "content": "docs results for 'mcp'"}
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "docs__search"

    mine = [r for r in await records(gw) if r["key_id"] != "master" and r["endpoint"] in ("chat", "mcp")]
    chats = sorted((r["prompt_tokens"], r["completion_tokens"]) for r in mine if r["endpoint"] == "chat")
    assert chats == [(10, 1), (20, 2)]  # one record per round, each with its own tokens
    assert all(r["cost_usd"] > 0 for r in mine if r["endpoint"] == "chat")
    assert [(r["model"], r["status"]) for r in mine if r["endpoint"] == "mcp"] == [("docs.search", 200)]
    assert len({r["request_id"] for r in mine}) == 1  # all of them one request


async def test_chat_stream_runs_the_rounds_and_sums_their_usage(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, _ = setup
    stream = await client(gw).chat.completions.create(
        model="smart", messages=ask("two rounds"), tools=[DOCS, FILES], stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, extra = "", None, None
    async for chunk in stream:
        for c in chunk.choices:
            text += c.delta.content or ""
            assert not c.delta.tool_calls
        usage = chunk.usage or usage
        extra = (chunk.model_extra or {}).get("x_fluxway") or extra
    assert text == "answer: docs results for 'a' | b"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (60, 6)
    assert extra is not None and [c["name"] for c in extra["mcp_calls"]] == ["docs.search", "files.echo"]


async def test_tool_errors_and_invented_tools_go_back_to_the_model(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, _ = setup
    failed = await client(gw).chat.completions.create(model="smart", messages=ask("fail"), tools=[DOCS])
    failure = failed.choices[0].message.content or ""
    assert failure.startswith("answer: Error:") and failure.endswith("disk full")
    assert (failed.model_extra or {})["x_fluxway"]["mcp_calls"][0]["is_error"] is True
    invented = await client(gw).chat.completions.create(
        model="smart", messages=ask("invent"), tools=[DOCS],
    )
    content = invented.choices[0].message.content or ""
    assert "unknown tool 'docs.nothing'" in content and "unknown tool 'made_up'" in content


async def test_a_key_forbidden_the_tool_is_not_offered_it_and_cannot_call_it(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, _ = setup
    key = await new_key(gw, mcp_tools=["docs.echo"])
    offered = await client(gw, key).chat.completions.create(model="smart", messages=ask("tools?"), tools=[DOCS])
    assert offered.choices[0].message.content == "offered: docs__echo"
    called = await client(gw, key).chat.completions.create(
        model="smart", messages=ask("forbidden"), tools=[DOCS],
    )
    assert called.choices[0].message.content == "answer: Error: this API key may not call tool 'docs.search'"
    # allowed_tools narrows what the model is offered further.
    narrow: Any = {**DOCS, "allowed_tools": ["fail", "echo"]}
    narrowed = await client(gw).chat.completions.create(model="smart", messages=ask("tools?"), tools=[narrow])
    assert narrowed.choices[0].message.content == "offered: docs__echo,docs__fail"


async def test_a_client_function_call_ends_the_loop(setup: tuple[Gateway, HttpMcpServer, FakeUpstream]) -> None:
    gw, _, _ = setup
    done = await client(gw).chat.completions.create(
        model="smart", messages=ask("client"), tools=[DOCS, WEATHER],
    )
    calls = done.choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["weather"]  # type: ignore[union-attr]
    assert done.choices[0].finish_reason == "tool_calls"


async def test_max_rounds_returns_the_last_answer(setup: tuple[Gateway, HttpMcpServer, FakeUpstream]) -> None:
    gw, _, up = setup
    before = len(up.requests)
    done = await client(gw).chat.completions.create(model="smart", messages=ask("forever"), tools=[DOCS])
    assert len(up.requests) - before == 4  # tool_loop.max_rounds model calls
    extra = (done.model_extra or {})["x_fluxway"]
    assert extra["tool_loop"] == {"rounds": 4, "max_rounds_reached": True}
    assert [c["is_error"] for c in extra["mcp_calls"]] == [False, False, False, True]
    assert "max_rounds" in extra["mcp_calls"][-1]["output"]
    assert done.choices[0].message.tool_calls is None
    assert done.usage is not None and done.usage.prompt_tokens == 10 + 20 + 30 + 40


async def test_a_slow_tool_times_out_and_a_killed_server_fails_as_a_tool_result(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, docs, _ = setup
    slow = await client(gw).chat.completions.create(model="smart", messages=ask("slow"), tools=[DOCS])
    assert "timed out" in (slow.choices[0].message.content or "")
    await asyncio.to_thread(docs.kill)
    down = await client(gw).chat.completions.create(model="smart", messages=ask("search"), tools=[DOCS])
    content = down.choices[0].message.content or ""
    assert content.startswith("answer: Error:") and "docs" in content


async def test_a_server_killed_mid_run_is_a_tool_error_and_the_answer_still_comes(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, _ = setup
    resp = await client(gw).responses.create(model="smart", input="kill it", tools=[DOCS])
    call = next(i for i in resp.output if i.type == "mcp_call")
    assert call.status == "failed" and call.error is not None and call.output is None  # type: ignore[union-attr]
    assert resp.output_text.startswith("answer: Error:") and "docs" in resp.output_text


async def test_a_later_round_failing_keeps_the_earlier_rounds_records(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, _ = setup
    key = await new_key(gw)
    with pytest.raises(openai.APIStatusError) as err:
        await client(gw, key).chat.completions.create(model="smart", messages=ask("upstream dies"), tools=[DOCS])
    assert err.value.status_code == 502
    mine = [r for r in await records(gw) if r["key_id"] != "master" and r["endpoint"] == "chat"]
    assert sorted((r["status"], r["prompt_tokens"]) for r in mine) == [(200, 10), (502, 0)]

    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s, s.post(
        gw.url + "/v1/responses", json={"model": "smart", "input": "upstream dies", "tools": [DOCS], "stream": True}
    ) as r:
        assert r.status == 200  # the stream began after round 1
        raw = (await r.read()).decode()
    for frame in raw.split("\n\n"):
        data = [line[6:] for line in frame.split("\n") if line.startswith("data: ")]
        if data:
            events.append(orjson.loads(data[0]))
    check_events(events)
    kinds = [e["type"] for e in events]
    assert "response.mcp_call.completed" in kinds and kinds[-2:] == ["error", "response.failed"]


async def test_the_budget_is_charged_for_every_round(setup: tuple[Gateway, HttpMcpServer, FakeUpstream]) -> None:
    gw, _, _ = setup
    key = await new_key(gw, budget={"amount_usd": 5.0, "period": "monthly"})
    await client(gw, key).chat.completions.create(model="smart", messages=ask("two rounds"), tools=[DOCS, FILES])
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {key}"}) as s, \
            s.get(gw.url + "/v1/me") as r:
        me = await r.json()
    # Three rounds: (10 + 20 + 30) prompt tokens at $1/M and (1 + 2 + 3) completion tokens at $2/M.
    expected = (60 * 1.0 + 6 * 2.0) / 1e6
    assert me["budgets"][0]["spent_usd"] == pytest.approx(expected)
    assert me["budgets"][0]["reserved_usd"] == 0
    assert me["spend_usd"] == pytest.approx(expected)


async def test_bad_mcp_tools_are_400s_naming_the_field(setup: tuple[Gateway, HttpMcpServer, FakeUpstream]) -> None:
    gw, _, _ = setup
    cases = [
        ({"type": "mcp", "server_label": "nowhere"}, "tools[0].server_label"),
        ({"type": "mcp"}, "tools[0].server_label"),
        ({"type": "mcp", "server_label": "docs", "server_url": "https://x.example/mcp"}, "tools[0].server_url"),
        ({"type": "mcp", "server_label": "docs", "require_approval": "always"}, "tools[0].require_approval"),
        ({"type": "mcp", "server_label": "docs", "require_approval": {"always": {"tool_names": ["search"]}}},
         "tools[0].require_approval"),
        ({"type": "mcp", "server_label": "docs", "allowed_tools": "search"}, "tools[0].allowed_tools"),
    ]
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s:
        for tool, param in cases:
            for path, body in (
                ("/v1/chat/completions", {"model": "smart", "messages": ask("x"), "tools": [tool]}),
                ("/v1/responses", {"model": "smart", "input": "x", "tools": [tool]}),
            ):
                async with s.post(gw.url + path, json=body) as r:
                    err = await r.json()
                assert r.status == 400, (path, tool, err)
                assert err["error"]["param"] == param and err["error"]["type"] == "invalid_request_error", err


# -- the Responses API --------------------------------------------------------------------------------


async def test_responses_create_returns_mcp_items_and_follow_ups_replay_them(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, up = setup
    c = client(gw)
    resp = await c.responses.create(model="smart", input="parallel", tools=[DOCS, FILES])
    kinds = [item.type for item in resp.output]
    assert kinds == ["mcp_list_tools", "mcp_list_tools", "mcp_call", "mcp_call", "message"]
    listing = resp.output[0]
    assert listing.server_label == "docs" and "search" in {t.name for t in listing.tools}  # type: ignore[union-attr]
    search, echo = resp.output[2], resp.output[3]
    assert (search.server_label, search.name, search.output) == ("docs", "search", "docs results for 'p'")  # type: ignore[union-attr]
    assert (echo.server_label, echo.name, echo.output, echo.error) == ("files", "echo", "q", None)  # type: ignore[union-attr]
    assert resp.output_text == "answer: docs results for 'p' | q"
    assert resp.usage is not None and (resp.usage.input_tokens, resp.usage.output_tokens) == (30, 3)
    check_response(resp.model_dump(mode="json", exclude_unset=True))

    stored = await c.responses.retrieve(resp.id)
    assert [i.type for i in stored.output] == kinds
    follow = await c.responses.create(model="smart", input="and then?", previous_response_id=resp.id)
    assert follow.output_text.startswith("answer:")
    sent = up.requests[-1].json()["messages"]
    replayed = [m for m in sent if m["role"] == "tool"]
    assert [m["content"] for m in replayed] == ["docs results for 'p'", "q"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "docs__search"


async def test_responses_stream_shows_the_calls_then_the_answer(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, _ = setup
    async with client(gw).responses.stream(model="smart", input="fail then", tools=[DOCS]) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.mcp_list_tools.completed" in kinds and "response.mcp_call.failed" in kinds
    assert kinds.index("response.mcp_call.failed") < kinds.index("response.output_text.delta")
    assert [i.type for i in final.output] == ["mcp_list_tools", "mcp_call", "message"]
    call = final.output[1]
    assert call.status == "failed" and call.error is not None  # type: ignore[union-attr]
    assert final.output_text.startswith("answer: Error:") and final.output_text.endswith("disk full")
    # Stored before response.completed left: a follow-up continues from it, the call replayed.
    follow = await client(gw).responses.create(model="smart", input="next", previous_response_id=final.id)
    assert follow.output_text.startswith("answer: Error:") and follow.output_text.endswith("disk full")

    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s, s.post(
        gw.url + "/v1/responses", json={"model": "smart", "input": "two rounds", "tools": [DOCS, FILES], "stream": True}
    ) as r:
        raw = (await r.read()).decode()
    for frame in raw.split("\n\n"):
        data = [line[6:] for line in frame.split("\n") if line.startswith("data: ")]
        if data:
            events.append(orjson.loads(data[0]))
    check_events(events)
    done = events[-1]["response"]
    assert [i["type"] for i in done["output"]] == ["mcp_list_tools", "mcp_list_tools", "mcp_call", "mcp_call",
                                                   "message"]
    assert done["usage"]["input_tokens"] == 10 + 20 + 30


async def test_responses_max_rounds_leaves_the_last_calls_unrun(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, _ = setup
    resp = await client(gw).responses.create(model="smart", input="forever", tools=[DOCS])
    calls = [i for i in resp.output if i.type == "mcp_call"]
    assert [getattr(c, "status", None) for c in calls] == ["completed", "completed", "completed", "incomplete"]
    assert resp.status == "completed"
    check_response(resp.model_dump(mode="json", exclude_unset=True))


# -- streaming throughout -----------------------------------------------------------------------------


async def _events_until(r: aiohttp.ClientResponse, seen: Any) -> AsyncIterator[dict[str, Any]]:
    """The SSE events of ``r`` as they arrive."""
    buffer = b""
    async for piece in r.content.iter_any():
        buffer += piece
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            data = [line[6:] for line in frame.split(b"\n") if line.startswith(b"data: ")]
            if data and data[0] != b"[DONE]":
                yield orjson.loads(data[0])


async def test_chat_stream_shows_every_rounds_text_as_it_comes(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream], gates: dict[str, Gate],
) -> None:
    gw, _, _ = setup
    stream = await client(gw).chat.completions.create(
        model="smart", messages=ask("talk two rounds, held"), tools=[DOCS, FILES], stream=True,
        stream_options={"include_usage": True},
    )
    deltas: list[str] = []
    usage, extra = None, None
    async for chunk in stream:
        for c in chunk.choices:
            assert not c.delta.tool_calls  # the MCP calls are the gateway's, never the client's
            if c.delta.content:
                deltas.append(c.delta.content)
                if "answer:" in c.delta.content:
                    gates["held"].opened.set()  # the final round's first word reached the client
        usage = chunk.usage or usage
        extra = (chunk.model_extra or {}).get("x_fluxway") or extra
    assert not gates["held"].timed_out, "the final round was held back until the upstream had finished"
    said = "Let me look that up. "
    text = "".join(deltas)
    assert text == f"{said}\n\n{said}\n\nanswer: docs results for 'a' | b"
    assert len(deltas) > 8  # word by word, as the upstream sent them
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (60, 6)
    assert extra is not None and extra["tool_loop"] == {"rounds": 3, "max_rounds_reached": False}
    # The same call whole: the same text.
    whole = await client(gw).chat.completions.create(model="smart", messages=ask("talk two rounds"),
                                                     tools=[DOCS, FILES])
    assert whole.choices[0].message.content == text


async def test_responses_stream_streams_every_round_with_the_calls_in_order(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream], gates: dict[str, Gate],
) -> None:
    gw, _, _ = setup
    events: list[dict[str, Any]] = []
    body = {"model": "smart", "input": "talk search, held", "tools": [DOCS], "stream": True}
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s, \
            s.post(gw.url + "/v1/responses", json=body) as r:
        async for event in _events_until(r, events):
            events.append(event)
            if event["type"] == "response.output_text.delta" and event["delta"].startswith("answer:"):
                gates["held"].opened.set()
    assert not gates["held"].timed_out, "the final round was held back until the upstream had finished"
    check_events(events)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["mcp_list_tools", "message", "mcp_call", "message"]
    # Each item is closed before the next opens; the preface streams before its call starts.
    opened: list[int] = []
    for e in events:
        if e["type"] == "response.output_item.added":
            assert not opened, f"item {e['output_index']} opened while {opened} still open"
            opened.append(e["output_index"])
        elif e["type"] == "response.output_item.done":
            assert opened == [e["output_index"]]
            opened.clear()
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) > 5 and "".join(deltas) == "Let me look that up. answer: docs results for 'mcp'"
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "message", "mcp_call", "message"]
    assert final["usage"]["input_tokens"] == 10 + 20

    # The official SDK's helper over the same stream, and the whole call: the same items.
    async with client(gw).responses.stream(model="smart", input="talk search", tools=[DOCS]) as stream:
        got = await stream.get_final_response()
    assert got.output_text == "Let me look that up. answer: docs results for 'mcp'"
    whole = await client(gw).responses.create(model="smart", input="talk search", tools=[DOCS])
    assert [i.type for i in whole.output] == [i.type for i in got.output] == [i["type"] for i in final["output"]]
    assert whole.output_text == got.output_text
    check_response(whole.model_dump(mode="json", exclude_unset=True))


async def test_a_round_cut_mid_stream_ends_the_stream_with_an_error_and_keeps_the_records(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, _ = setup
    key = await new_key(gw)
    events: list[dict[str, Any]] = []
    body = {"model": "smart", "input": "search, cut short", "tools": [DOCS], "stream": True}
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {key}"}) as s, \
            s.post(gw.url + "/v1/responses", json=body) as r:
        assert r.status == 200
        async for event in _events_until(r, events):
            events.append(event)
    check_events(events)
    kinds = [e["type"] for e in events]
    assert "response.mcp_call.completed" in kinds and "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    failed = events[-1]["response"]
    assert [i["type"] for i in failed["output"]] == ["mcp_list_tools", "mcp_call"]
    mine = [r for r in await records(gw) if r["key_id"] != "master" and r["endpoint"] == "chat"]
    # Both rounds recorded: round 1 with its usage, the cut one with Fluxway's own count of it.
    assert len(mine) == 2 and sorted(r["prompt_tokens"] for r in mine)[0] == 10
    assert min(r["completion_tokens"] for r in mine) >= 1


async def test_a_client_leaving_mid_loop_stops_it(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream], gates: dict[str, Gate],
) -> None:
    gw, _, up = setup
    key = await new_key(gw)
    before = len(up.requests)
    body = {"model": "smart", "input": "two rounds, then the client leaves", "tools": [DOCS, FILES], "stream": True}
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {key}"}) as s, \
            s.post(gw.url + "/v1/responses", json=body) as r:
        async for event in _events_until(r, None):
            if event["type"] == "response.output_text.delta":
                break  # round 3's first word: gone
    gates["leaves"].opened.set()
    for _ in range(100):
        mine = [r for r in await records(gw) if r["key_id"] != "master" and r["endpoint"] == "chat"]
        if len(mine) == 3:
            break
        await asyncio.sleep(0.05)
    assert sorted(r["status"] for r in mine) == [200, 200, 499]
    assert len(up.requests) - before == 3  # no round after the client left


# -- mixed calls, max_tool_calls, tool_choice -----------------------------------------------------------


async def test_mcp_calls_beside_a_client_call_run_and_the_client_gets_its_call(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, up = setup
    c = client(gw)
    chat = await c.chat.completions.create(model="smart", messages=ask("mixed"), tools=[DOCS, WEATHER])
    calls = chat.choices[0].message.tool_calls
    assert calls is not None and [x.function.name for x in calls] == ["weather"]  # type: ignore[union-attr]
    assert chat.choices[0].finish_reason == "tool_calls"
    assert [m["output"] for m in (chat.model_extra or {})["x_fluxway"]["mcp_calls"]] == ["docs results for 'm'"]

    weather: Any = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
    resp = await c.responses.create(model="smart", input="mixed", tools=[DOCS, weather])
    assert [i.type for i in resp.output] == ["mcp_list_tools", "mcp_call", "function_call"]
    assert resp.output[1].status == "completed"  # type: ignore[union-attr]
    check_response(resp.model_dump(mode="json", exclude_unset=True))
    fc = resp.output[2]
    follow = await c.responses.create(model="smart", previous_response_id=resp.id, tools=[DOCS, weather], input=[
        {"type": "function_call_output", "call_id": fc.call_id, "output": "sunny"}])  # type: ignore[union-attr]
    assert follow.output_text == "answer: docs results for 'm' | sunny"  # both results reached the model
    sent = up.requests[-1].json()["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "tool"]

    async with c.responses.stream(model="smart", input="mixed", tools=[DOCS, weather]) as stream:
        streamed = await stream.get_final_response()
    assert [i.type for i in streamed.output] == ["mcp_list_tools", "mcp_call", "function_call"]


async def test_max_tool_calls_caps_the_calls_run(setup: tuple[Gateway, HttpMcpServer, FakeUpstream]) -> None:
    gw, _, up = setup
    resp = await client(gw).responses.create(model="smart", input="parallel", tools=[DOCS, FILES], max_tool_calls=1)
    calls = [i for i in resp.output if i.type == "mcp_call"]
    assert [c.status for c in calls] == ["completed", "incomplete"]  # type: ignore[union-attr]
    assert resp.output_text.startswith("answer: docs results for 'p' | Error: not run")
    assert "max_tool_calls (1)" in resp.output_text
    assert "tools" not in up.requests[-1].json()  # spent: the last round is offered no MCP tool
    assert resp.max_tool_calls == 1
    check_response(resp.model_dump(mode="json", exclude_unset=True))


async def test_tool_choice_may_name_an_mcp_tool_for_the_first_round(
    setup: tuple[Gateway, HttpMcpServer, FakeUpstream],
) -> None:
    gw, _, up = setup
    before = len(up.requests)
    choice: Any = {"type": "mcp", "server_label": "docs", "name": "search"}
    resp = await client(gw).responses.create(model="smart", input="search", tools=[DOCS], tool_choice=choice)
    sent = [r.json() for r in up.requests[before:]]
    assert [b.get("tool_choice") for b in sent] == [{"type": "function", "function": {"name": "docs__search"}}, "auto"]
    assert resp.output_text == "answer: docs results for 'mcp'"
    check_response(resp.model_dump(mode="json", exclude_unset=True))
    key = await new_key(gw, mcp_tools=["docs.echo"])
    async with aiohttp.ClientSession() as s:
        for who, tc, param in (
            (MASTER, {"type": "mcp", "server_label": "files"}, "tool_choice.server_label"),
            (MASTER, {"type": "mcp"}, "tool_choice.server_label"),
            (key, choice, "tool_choice"),  # a tool this key may not call
        ):
            async with s.post(gw.url + "/v1/responses", headers={"authorization": f"Bearer {who}"}, json={
                "model": "smart", "input": "x", "tools": [DOCS], "tool_choice": tc}) as r:
                err = await r.json()
            assert r.status == 400 and err["error"]["param"] == param, err
