"""End to end: the official openai SDK's Responses API -> Fluxway's /v1/responses -> a chat upstream.

Every answer of /v1/responses, /v1/responses/{id} and its input_items (Response objects, stream
events, item pages, error bodies) is checked on the wire against OpenAI's published OpenAPI document
(tests/support/responses_schema.py): the SDK's HTTP client checks what it receives, and the raw
helpers here check theirs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from pydantic import BaseModel

from tests.support.gateway import Gateway, run_gateway
from tests.support.responses_schema import check_answer, check_events, checked_http_client, sse_events
from tests.support.responses_upstream import TOOL_ANSWER, chat
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-test"
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False},
    "strict": True,
}


class Weather(BaseModel):
    city: str
    temp_c: int


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        upstream.route("POST", "/v1/chat/completions", chat)
        yield upstream


@pytest.fixture
async def gw(up: FakeUpstream) -> AsyncIterator[Gateway]:
    cfg = {
        "auth": {"master_key": MASTER},
        "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
        "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}],
                    "retry": {"attempts": 1}}],
    }
    async with run_gateway(cfg) as gateway:
        yield gateway


def _client(gw: Gateway, key: str = MASTER) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, http_client=checked_http_client())


async def _raw(gw: Gateway, method: str, path: str, body: Any = None, key: str = MASTER) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {key}"}) as s,
        s.request(method, gw.url + path, json=body) as r,
    ):
        raw = await r.read()
        if path.startswith("/v1/responses"):
            check_answer(method, path.partition("?")[0], r.status, r.content_type, raw)
        return r.status, json.loads(raw)


async def _events(gw: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw SSE events of a streamed call, checked against the schema (and their ``event:`` names
    against ``type``)."""
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {MASTER}"}) as s,
        s.post(gw.url + "/v1/responses", json={**body, "stream": True}) as r,
    ):
        assert r.status == 200
        events = sse_events(await r.read())
    check_events(events)
    return events


async def _key(gw: Gateway, name: str) -> str:
    status, created = await _raw(gw, "POST", "/admin/keys", {"name": name})
    assert status == 201, created
    return str(created["key"])


async def test_create_with_a_string_input_and_instructions(gw: Gateway, up: FakeUpstream) -> None:
    resp = await _client(gw).responses.create(model="smart", input="Say hello", instructions="Be brief.",
                                              temperature=0.3, max_output_tokens=50, metadata={"run": "1"})
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.status == "completed"
    assert resp.output_text == "Hello there!"
    assert resp.model == "smart" and resp.instructions == "Be brief." and resp.metadata == {"run": "1"}
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (11, 5, 16)
    assert resp.usage.input_tokens_details.cached_tokens == 2
    sent = up.requests[-1].json()
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0.3 and sent["max_completion_tokens"] == 50
    assert "metadata" not in sent and "store" not in sent
    status, raw = await _raw(gw, "GET", f"/v1/responses/{resp.id}")
    assert status == 200 and raw["id"] == resp.id


async def test_create_with_items(gw: Gateway, up: FakeUpstream) -> None:
    resp = await _client(gw).responses.create(model="smart", input=[
        {"role": "developer", "content": "Answer in English."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is in this image?"},
            {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
        {"role": "user", "content": "Say hello"},
    ])
    assert resp.output_text == "Hello there!"
    assert up.requests[-1].json()["messages"] == [
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/cat.png",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "Say hello"},
    ]


async def test_stream_helper_final_response(gw: Gateway) -> None:
    async with _client(gw).responses.stream(model="smart", input="Say hello") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == "Hello there!" and len(deltas) == 3
    assert final.output_text == "Hello there!" and final.status == "completed"
    assert final.usage is not None and final.usage.total_tokens == 16
    events = await _events(gw, {"model": "smart", "input": "Say hello"})
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]
    done = events[-1]["response"]
    assert done["output"][0]["content"][0]["text"] == "Hello there!"
    assert done["usage"]["output_tokens"] == 5
    # stored before the final event: readable at once
    status, stored = await _raw(gw, "GET", f"/v1/responses/{done['id']}")
    assert status == 200 and stored["output"] == done["output"]


async def test_parse_with_a_pydantic_model(gw: Gateway, up: FakeUpstream) -> None:
    parsed = await _client(gw).responses.parse(model="smart", input="Weather in Paris as JSON", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", temp_c=18)
    fmt = up.requests[-1].json()["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Weather"
    assert fmt["json_schema"]["strict"] is True and fmt["json_schema"]["schema"]["required"] == ["city", "temp_c"]
    assert parsed.text is not None and parsed.text.format is not None and parsed.text.format.type == "json_schema"
    async with _client(gw).responses.stream(model="smart", input="Weather as JSON", text_format=Weather) as stream:
        final = await stream.get_final_response()
    assert final.output_parsed == Weather(city="Paris", temp_c=18)


@pytest.mark.parametrize("streamed", [False, True])
async def test_function_tool_round_trip_with_previous_response_id(
    gw: Gateway, up: FakeUpstream, streamed: bool
) -> None:
    client = _client(gw)
    if streamed:
        async with client.responses.stream(model="smart", input="Weather in Paris?", tools=[WEATHER_TOOL],
                                           tool_choice="auto") as stream:
            first = await stream.get_final_response()
    else:
        first = await client.responses.create(model="smart", input="Weather in Paris?", tools=[WEATHER_TOOL],
                                              tool_choice="auto")
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].call_id == "call_w1"
    sent = up.requests[-1].json()
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "weather", "description": WEATHER_TOOL["description"], "parameters": WEATHER_TOOL["parameters"],
        "strict": True}}]
    assert sent["tool_choice"] == "auto"
    # at once: the follow-up chains to the first response (stored before its answer was sent)
    second = await client.responses.create(
        model="smart", previous_response_id=first.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, sunny"}],
    )
    assert second.output_text == f"{TOOL_ANSWER} (18C, sunny)"
    assert second.previous_response_id == first.id
    assert up.requests[-1].json()["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_w1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_w1", "content": "18C, sunny"},
    ]
    # and a third turn chains through both
    third = await client.responses.create(model="smart", previous_response_id=second.id, input="Thanks!")
    assert third.output_text == "Hello there!"
    assert [m["role"] for m in up.requests[-1].json()["messages"]] == ["user", "assistant", "tool", "assistant", "user"]


async def test_stream_tool_call_events(gw: Gateway) -> None:
    events = await _events(gw, {"model": "smart", "input": "Weather?", "tools": [WEATHER_TOOL]})
    kinds = [e["type"] for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert events[5]["arguments"] == '{"city": "Paris"}' and events[5]["name"] == "weather"
    assert events[-1]["response"]["output"][0]["call_id"] == "call_w1"


async def test_retrieve_input_items_and_delete(gw: Gateway) -> None:
    client = _client(gw)
    resp = await client.responses.create(model="smart", input=[
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}, {"role": "user", "content": "hi"}])
    got = await client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == "Hello there!"
    items = await client.responses.input_items.list(resp.id)
    assert [i.content[0].text for i in items.data] == ["hi", "two", "one"]  # type: ignore[union-attr]
    asc = await client.responses.input_items.list(resp.id, order="asc", limit=2)
    assert [i.content[0].text for i in asc.data] == ["one", "two"]  # type: ignore[union-attr]
    assert asc.has_more is True
    rest = await client.responses.input_items.list(resp.id, order="asc", after=asc.data[-1].id)
    assert [i.content[0].text for i in rest.data] == ["hi"] and rest.has_more is False  # type: ignore[union-attr]
    status, page = await _raw(gw, "GET", f"/v1/responses/{resp.id}/input_items?limit=1")
    assert status == 200 and len(page["data"]) == 1
    deleted = await client.responses.delete(resp.id)
    assert deleted is None  # the SDK returns nothing; the wire body is checked below
    status, body = await _raw(gw, "DELETE", f"/v1/responses/{resp.id}")
    assert status == 404 and body["error"]["code"] == "not_found"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(resp.id)
    again = await client.responses.create(model="smart", input="x")
    status, body = await _raw(gw, "DELETE", f"/v1/responses/{again.id}")
    assert (status, body) == (200, {"id": again.id, "object": "response", "deleted": True})


async def test_store_false_keeps_nothing(gw: Gateway) -> None:
    client = _client(gw)
    resp = await client.responses.create(model="smart", input="Say hello", store=False)
    assert resp.store is False and resp.output_text == "Hello there!"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.create(model="smart", input="more", previous_response_id=resp.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert info.value.body["code"] == "previous_response_not_found"  # type: ignore[index]


async def test_another_keys_response_is_not_found(gw: Gateway, up: FakeUpstream) -> None:
    alice, bob = await _key(gw, "alice"), await _key(gw, "bob")
    mine = await _client(gw, alice).responses.create(model="smart", input="Say hello")
    assert (await _client(gw, alice).responses.retrieve(mine.id)).id == mine.id
    for path, method in [(f"/v1/responses/{mine.id}", "GET"), (f"/v1/responses/{mine.id}/input_items", "GET"),
                         (f"/v1/responses/{mine.id}", "DELETE")]:
        status, body = await _raw(gw, method, path, key=bob)
        assert status == 404, (path, method, body)
    calls = len(up.requests)
    status, body = await _raw(gw, "POST", "/v1/responses",
                              {"model": "smart", "input": "x", "previous_response_id": mine.id}, key=bob)
    assert status == 404 and body["error"]["param"] == "previous_response_id"
    assert len(up.requests) == calls  # refused before any upstream call
    assert (await _client(gw, alice).responses.retrieve(mine.id)).id == mine.id  # bob's DELETE did nothing


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "x", "temperature": 3}, "temperature"),
        ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"input": "x", "frobnicate": True}, "frobnicate"),
        ({"input": "x", "background": True}, "background"),
        ({}, "input"),
    ],
)
async def test_bad_input_is_400_naming_the_field(gw: Gateway, up: FakeUpstream, body: dict[str, Any],
                                                 param: str) -> None:
    status, err = await _raw(gw, "POST", "/v1/responses", {"model": "smart", **body})
    assert status == 400, err
    assert err["error"]["param"] == param and err["error"]["type"] == "invalid_request_error"
    assert not up.requests


async def test_unknown_item_type_via_the_sdk(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await _client(gw).responses.create(model="smart", input=[{"type": "item_reference", "id": "x"}])
    assert info.value.body["param"] == "input[0].type"  # type: ignore[index]


async def test_mid_stream_failure_is_response_failed(gw: Gateway) -> None:
    events = await _events(gw, {"model": "smart", "input": "break mid-stream"})
    assert events[-2]["type"] == "error" and events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    status, _ = await _raw(gw, "GET", f"/v1/responses/{failed['id']}")
    assert status == 404  # a failed response is not kept


async def test_usage_is_recorded_per_call(gw: Gateway) -> None:
    key = await _key(gw, "carol")
    await _client(gw, key).responses.create(model="smart", input="Say hello")
    async with _client(gw, key).responses.stream(model="smart", input="Say hello") as stream:
        await stream.get_final_response()
    status, me = await _raw(gw, "GET", "/v1/me/usage", key=key)
    assert status == 200, me
    [row] = me["data"]
    assert row["requests"] == 2 and row["prompt_tokens"] == 22 and row["completion_tokens"] == 10, row


async def test_keys_allowlists_and_limits_apply(gw: Gateway, up: FakeUpstream) -> None:
    status, created = await _raw(gw, "POST", "/admin/keys", {"name": "narrow", "models": ["other"]})
    assert status == 201
    status, body = await _raw(gw, "POST", "/v1/responses", {"model": "smart", "input": "x"}, key=created["key"])
    assert status == 403 and body["error"]["param"] == "model"
    status, created = await _raw(gw, "POST", "/admin/keys", {"name": "slow", "rpm": 1})
    assert (await _raw(gw, "POST", "/v1/responses", {"model": "smart", "input": "x"}, key=created["key"]))[0] == 200
    status, body = await _raw(gw, "POST", "/v1/responses", {"model": "smart", "input": "x"}, key=created["key"])
    assert status == 429 and body["error"]["type"] == "rate_limit_error"
    status, body = await _raw(gw, "POST", "/v1/responses", {"model": "smart", "input": "x"}, key="sk-nope")
    assert status == 401
    assert len(up.requests) == 1


async def test_store_failure_is_503_not_500(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    resp = await _client(gw).responses.create(model="smart", input="x")

    async def broken(*args: Any) -> Any:
        raise OSError("disk gone")

    monkeypatch.setattr(gw.runtime.governance.store.responses, "get", broken)
    status, body = await _raw(gw, "GET", f"/v1/responses/{resp.id}")
    assert status == 503 and body["error"]["code"] == "store_unavailable"
    status, body = await _raw(gw, "POST", "/v1/responses",
                              {"model": "smart", "input": "x", "previous_response_id": resp.id})
    assert status == 503 and body["error"]["param"] == "previous_response_id"
