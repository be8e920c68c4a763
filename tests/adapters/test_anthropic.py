"""Anthropic adapter: request translation (golden files + each mapping), answers, streams, errors."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxway.adapters.anthropic import AnthropicAdapter
from fluxway.adapters.anthropic.request import build_body, default_max_tokens
from fluxway.adapters.anthropic.stream import AnthropicStreamDecoder
from fluxway.adapters.registry import create_adapter
from fluxway.adapters.settings import AnthropicSettings
from fluxway.canonical import CanonicalRequest, Credentials, Endpoint, ErrorKind, StreamChunk, Target, UpstreamError

FIX = Path(__file__).parent.parent / "fixtures" / "anthropic"
MODEL = "claude-sonnet-4-5"
TARGET = Target("anth", MODEL)
CREDS = Credentials("sk-ant-test")
TEXT = "Hello! How can I help you today?"


def fixture(name: str) -> Any:
    return orjson.loads((FIX / name).read_bytes())


def adapter(**kw: Any) -> AnthropicAdapter:
    return AnthropicAdapter(AnthropicSettings(name="anth", type="anthropic", api_keys=("k",), **kw))


def chat(stream: bool = False, **body: Any) -> CanonicalRequest:
    b: dict[str, Any] = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], **body}
    return CanonicalRequest(Endpoint.CHAT, "smart", b, stream=stream)


def sent(req: CanonicalRequest, model: str = MODEL) -> dict[str, Any]:
    call = adapter().build(req, Target("anth", model), CREDS)
    assert call.body is not None
    body: dict[str, Any] = orjson.loads(call.body)
    return body


def bad(**body: Any) -> UpstreamError:
    with pytest.raises(UpstreamError) as exc:
        adapter().build(chat(**body), TARGET, CREDS)
    assert exc.value.kind is ErrorKind.BAD_REQUEST
    return exc.value


# -- building -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in FIX.glob("build_*.json")))
def test_golden_request_translation(name: str) -> None:
    case = fixture(name)
    original = copy.deepcopy(case["openai"])
    req = CanonicalRequest(Endpoint.CHAT, "smart", case["openai"], stream=case["stream"])
    assert sent(req, case["model"]) == case["anthropic"]
    assert case["openai"] == original  # the canonical body is read-only


def test_url_and_headers() -> None:
    call = adapter().build(chat(), TARGET, CREDS)
    assert call.method == "POST"
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers["x-api-key"] == "sk-ant-test"
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in call.headers
    assert "accept" not in call.headers
    assert adapter().build(chat(stream=True), TARGET, CREDS).headers["accept"] == "text/event-stream"


def test_configured_version_base_url_and_headers() -> None:
    a = adapter(api_version="2099-01-01", base_url="http://127.0.0.1:9/v1/", headers={"anthropic-beta": "x-1"})
    call = a.build(chat(), TARGET, CREDS)
    assert call.url == "http://127.0.0.1:9/v1/messages"
    assert call.headers["anthropic-version"] == "2099-01-01"
    assert call.headers["anthropic-beta"] == "x-1"


def test_registry_and_supported_endpoints() -> None:
    a = create_adapter(AnthropicSettings(name="a", type="anthropic", api_keys=("k",)))
    assert isinstance(a, AnthropicAdapter)
    assert a.supports(Endpoint.CHAT)
    assert not a.supports(Endpoint.EMBEDDINGS)
    assert not a.supports(Endpoint.COMPLETIONS)
    with pytest.raises(UpstreamError):
        a.build(CanonicalRequest(Endpoint.EMBEDDINGS, "e", {"input": "x"}), TARGET, CREDS)


@pytest.mark.parametrize(
    ("model", "expected"),
    [("claude-3-haiku-20240307", 4096), ("claude-3-5-sonnet-20241022", 8192), ("claude-3-7-sonnet-latest", 16384),
     ("claude-opus-4-1", 16384), ("claude-haiku-4-5", 16384), ("some-proxy-model", 4096)],
)
def test_default_max_tokens(model: str, expected: int) -> None:
    assert default_max_tokens(model) == expected
    assert sent(chat(), model)["max_tokens"] == expected


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert sent(chat(max_tokens=100, max_completion_tokens=200))["max_tokens"] == 200
    assert sent(chat(max_tokens=100))["max_tokens"] == 100


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert sent(chat(tools=tools, tool_choice=choice))["tool_choice"] == expected


def test_allowed_tools_choice_filters_tools() -> None:
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b", "c")]
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "c"}}]}}
    body = sent(chat(tools=tools, tool_choice=choice))
    assert [t["name"] for t in body["tools"]] == ["a", "c"]
    assert body["tools"][0]["input_schema"] == {"type": "object", "properties": {}}
    assert body["tool_choice"] == {"type": "any"}


def test_parallel_tool_calls_false() -> None:
    tools = [{"type": "function", "function": {"name": "a"}}]
    assert sent(chat(tools=tools, parallel_tool_calls=False))["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True}
    assert sent(chat(tools=tools, tool_choice="none", parallel_tool_calls=False))["tool_choice"] == {"type": "none"}
    assert "tool_choice" not in sent(chat(tools=tools, parallel_tool_calls=True))


def test_tool_history_without_tools_declares_them() -> None:
    msgs = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
    ]
    body = sent(chat(messages=msgs))
    assert [t["name"] for t in body["tools"]] == ["get_weather"]
    assert body["tool_choice"] == {"type": "none"}
    assert body["messages"][1]["content"][0]["input"] == {}


@pytest.mark.parametrize(("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 2048), ("high", 4096)])
def test_reasoning_effort_to_thinking(effort: str, budget: int) -> None:
    body = sent(chat(reasoning_effort=effort, temperature=0.3, top_k=5, top_p=0.5))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] > budget
    assert "temperature" not in body and "top_k" not in body and "top_p" not in body


def test_reasoning_effort_edge_cases() -> None:
    assert "thinking" not in sent(chat(reasoning_effort="none"))
    body = sent(chat(reasoning_effort="high", max_tokens=3000))
    assert body["max_tokens"] == 3000
    assert body["thinking"]["budget_tokens"] == 2999  # must stay below max_tokens
    assert "thinking" not in sent(chat(reasoning_effort="high", max_tokens=500))  # below the 1024 minimum
    tools = [{"type": "function", "function": {"name": "a"}}]
    assert "thinking" not in sent(chat(reasoning_effort="high", tools=tools, tool_choice="required"))
    native = {"type": "enabled", "budget_tokens": 2000}
    assert sent(chat(thinking=native))["thinking"] == native
    bad(reasoning_effort="extreme")


def test_sampling_parameters() -> None:
    body = sent(chat(temperature=1.7, top_p=0.8, top_k=40, stop=["END", "STOP"], safety_identifier="hash-1"))
    assert body["temperature"] == 1.0  # Anthropic's range is 0..1
    assert body["top_p"] == 0.8
    assert body["top_k"] == 40
    assert body["stop_sequences"] == ["END", "STOP"]
    assert body["metadata"] == {"user_id": "hash-1"}
    for dropped in ("seed", "n", "logprobs", "frequency_penalty", "stream_options", "response_format"):
        assert dropped not in body


def test_json_schema_on_claude_3_uses_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    body = sent(chat(response_format=rf), "claude-3-5-haiku-20241022")
    assert body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert "output_config" not in body


def test_json_object_with_caller_tools_asks_in_words() -> None:
    tools = [{"type": "function", "function": {"name": "a"}}]
    body = sent(chat(response_format={"type": "json_object"}, tools=tools))
    assert [t["name"] for t in body["tools"]] == ["a"]
    assert "JSON" in body["system"]


def test_empty_text_dropped_and_turns_merged() -> None:
    msgs = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "  "},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "two"}]},
    ]
    assert sent(chat(messages=msgs))["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
    ]


def test_cache_control_and_thinking_blocks_pass_through() -> None:
    cc = {"type": "ephemeral"}
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    msgs = [
        {"role": "system", "content": [{"type": "text", "text": "long doc", "cache_control": cc}]},
        {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": cc}]},
        {"role": "assistant", "content": "a", "thinking_blocks": [thinking]},
        {"role": "user", "content": "q2"},
    ]
    body = sent(chat(messages=msgs))
    assert body["system"] == [{"type": "text", "text": "long doc", "cache_control": cc}]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "q", "cache_control": cc}]
    assert body["messages"][1]["content"] == [thinking, {"type": "text", "text": "a"}]


def test_invalid_requests_are_bad_request() -> None:
    assert "n:" in bad(n=2).message
    assert "input_audio" in bad(messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]).message
    svg = {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}
    bad(messages=[{"role": "user", "content": [svg]}])
    bad(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}])
    bad(messages=[{"role": "tool", "content": "x"}])
    bad(messages=[{"role": "function", "name": "f", "content": "x"}])
    bad(messages=[])
    bad(messages=[{"role": "system", "content": "only a system prompt"}])
    bad(tools=[{"type": "custom", "custom": {"name": "x"}}])
    bad(tool_choice={"type": "custom"}, tools=[{"type": "function", "function": {"name": "a"}}])


def test_build_body_is_pure_for_the_same_input() -> None:
    body = fixture("build_tools.json")["openai"]
    assert build_body(body, MODEL, False) == build_body(body, MODEL, False)


# -- answers ------------------------------------------------------------------------------------


def parse(name: str, req: CanonicalRequest | None = None, model: str = MODEL) -> dict[str, Any]:
    resp = adapter().parse(req or chat(), Target("anth", model), 200, {}, (FIX / name).read_bytes())
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == resp.body["usage"]["prompt_tokens"]
    assert resp.usage.completion_tokens == resp.body["usage"]["completion_tokens"]
    return resp.body


def test_parse_text() -> None:
    body = parse("response_text.json")
    assert body["object"] == "chat.completion"
    assert body["id"] == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert body["model"] == "claude-sonnet-4-5-20250929"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": TEXT, "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def test_parse_tool_use() -> None:
    choice = parse("response_tool_use.json")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in Paris for you."
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_parse_thinking() -> None:
    body = parse("response_thinking.json")
    msg = body["choices"][0]["message"]
    assert msg["content"] == "27 \u00d7 453 = 12,231."
    assert msg["reasoning_content"] == "The user wants 27 * 453. 27 * 453 = 12231."
    assert [b["type"] for b in msg["thinking_blocks"]] == ["thinking", "redacted_thinking"]
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 160}


def test_parse_cache_usage() -> None:
    resp = adapter().parse(chat(), TARGET, 200, {}, (FIX / "response_cache_usage.json").read_bytes())
    assert resp.body["usage"] == {
        "prompt_tokens": 2305, "completion_tokens": 40, "total_tokens": 2345,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 300},
    }
    assert resp.usage is not None and resp.usage.cached_tokens == 2000
    assert resp.body["choices"][0]["finish_reason"] == "length"


def test_parse_json_tool_answer_becomes_content() -> None:
    req = chat(response_format={"type": "json_object"})
    choice = parse("response_json_tool.json", req, "claude-3-5-haiku-20241022")["choices"][0]
    assert orjson.loads(choice["message"]["content"]) == {"city": "Paris", "temperature_c": 18}
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"


def test_parse_refusal() -> None:
    choice = parse("response_refusal.json")["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] is None


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "stop"),
     ("refusal", "content_filter"), ("model_context_window_exceeded", "length"), ("pause_turn", "length"),
     ("something_new", "stop")],
)
def test_finish_reason_mapping(stop_reason: str, finish: str) -> None:
    data = fixture("response_text.json") | {"stop_reason": stop_reason}
    resp = adapter().parse(chat(), TARGET, 200, {}, orjson.dumps(data))
    # tool_use without a tool_use block is reported as a plain stop
    assert resp.body["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"type": "message"}'])
def test_parse_garbage_is_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamError) as exc:
        adapter().parse(chat(), TARGET, 200, {}, body)
    assert exc.value.kind is ErrorKind.PROTOCOL


def test_parse_error_status_raises_classified() -> None:
    with pytest.raises(UpstreamError) as exc:
        adapter().parse(chat(), TARGET, 529, {}, (FIX / "error_overloaded.json").read_bytes())
    assert exc.value.kind is ErrorKind.OVERLOADED


# -- streams ------------------------------------------------------------------------------------


def decode(data: bytes, cuts: list[int] | None = None, json_tool: bool = False) -> list[dict[str, Any]]:
    dec = AnthropicStreamDecoder(MODEL, json_tool)
    chunks: list[StreamChunk] = []
    start = 0
    for cut in [*(cuts or []), len(data)]:
        chunks.extend(dec.feed(data[start:cut]))
        start = cut
    chunks.extend(dec.close())
    return [{**c.data, "created": 0} for c in chunks]  # "created" is the clock, not the stream


def deltas(chunks: list[dict[str, Any]], key: str) -> str:
    return "".join(c["choices"][0]["delta"].get(key) or "" for c in chunks if c["choices"])


def test_stream_text() -> None:
    chunks = decode((FIX / "stream_text.sse").read_bytes())
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "msg_01QC4g3HwBThD4BaNtBckFDJ" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert deltas(chunks, "content") == TEXT
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]) == 1


@pytest.mark.parametrize("name", ["stream_text.sse", "stream_tool_use.sse", "stream_thinking.sse"])
def test_stream_split_at_every_byte_boundary(name: str) -> None:
    data = (FIX / name).read_bytes()
    whole = decode(data)
    for i in range(1, len(data)):
        assert decode(data, [i]) == whole, f"split at byte {i}"
    assert decode(data, list(range(1, len(data)))) == whole


def test_stream_crlf_line_endings() -> None:
    data = (FIX / "stream_text.sse").read_bytes()
    assert decode(data.replace(b"\n", b"\r\n")) == decode(data)


def test_stream_tool_use() -> None:
    chunks = decode((FIX / "stream_tool_use.sse").read_bytes())
    assert deltas(chunks, "content") == "Okay, let's check the weather for Paris."
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert all("id" not in tc for tc in calls if tc["index"] == 0 and tc is not calls[0])
    args = {i: "".join(tc["function"].get("arguments", "") for tc in calls if tc["index"] == i) for i in (0, 1)}
    assert orjson.loads(args[0]) == {"city": "Paris"}
    assert orjson.loads(args[1]) == {"tz": "Europe/Paris"}
    assert [tc["function"]["name"] for tc in calls if "id" in tc] == ["get_weather", "get_time"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 89


def test_stream_thinking_and_cache_usage() -> None:
    chunks = decode((FIX / "stream_thinking.sse").read_bytes())
    assert deltas(chunks, "reasoning_content") == "27 * 453 = 12231."
    assert deltas(chunks, "content") == "27 \u00d7 453 = 12,231."
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 156, "completion_tokens": 180, "total_tokens": 336,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 10},
    }


def test_stream_keeps_the_signature_and_redacted_thinking() -> None:
    """Each thinking block goes out whole, with its signature, once Anthropic closes it."""
    data = (FIX / "stream_thinking.sse").read_bytes()
    redacted = (b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":'
                b'{"type":"redacted_thinking","data":"RWR4"}}\n\nevent: content_block_stop\ndata: '
                b'{"type":"content_block_stop","index":1}\n\n')
    cut = data.index(b"event: content_block_start", data.index(b"content_block_stop"))
    renumbered = data[cut:].replace(b'"index":1', b'"index":2')
    chunks = decode(data[:cut] + redacted + renumbered)
    blocks = [b for c in chunks if c["choices"] for b in c["choices"][0]["delta"].get("thinking_blocks", [])]
    assert blocks == [
        {"type": "thinking", "thinking": "27 * 453 = 12231.",
         "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds", "index": 0},
        {"type": "redacted_thinking", "data": "RWR4", "index": 1},
    ]
    assert deltas(chunks, "reasoning_content") == "27 * 453 = 12231."
    # the signed block comes after its text and before the answer's text
    kinds = [next(iter(c["choices"][0]["delta"]), None) for c in chunks if c["choices"]]
    assert kinds.index("thinking_blocks") > kinds.index("reasoning_content")
    assert kinds.index("thinking_blocks") < kinds.index("content", 1)


def test_assistant_thinking_blocks_lead_the_turn_unmodified() -> None:
    turn = {"role": "assistant", "content": "4", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}], "thinking_blocks": [
        {"type": "thinking", "thinking": "add", "signature": "SIG", "index": 0},
        {"type": "redacted_thinking", "data": "Zm9v", "index": 1}]}
    body = sent(chat(messages=[{"role": "user", "content": "2+2"}, turn,
                                         {"role": "tool", "tool_call_id": "t1", "content": "ok"}]))
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "add", "signature": "SIG"}, {"type": "redacted_thinking", "data": "Zm9v"},
        {"type": "text", "text": "4"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]


def test_stream_json_tool_becomes_content() -> None:
    chunks = decode((FIX / "stream_json_tool.sse").read_bytes(), json_tool=True)
    assert orjson.loads(deltas(chunks, "content")) == {"city": "Paris", "temperature_c": 18}
    assert not any(c["choices"] and "tool_calls" in c["choices"][0]["delta"] for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


def test_stream_decoder_from_adapter_knows_json_mode() -> None:
    req = chat(stream=True, response_format={"type": "json_object"})
    dec = adapter().stream_decoder(req, Target("anth", "claude-3-5-haiku-20241022"))
    chunks = dec.feed((FIX / "stream_json_tool.sse").read_bytes()) + dec.close()
    assert orjson.loads(deltas([c.data for c in chunks], "content")) == {"city": "Paris", "temperature_c": 18}


def test_stream_error_event_is_classified() -> None:
    dec = AnthropicStreamDecoder(MODEL)
    with pytest.raises(UpstreamError) as exc:
        dec.feed((FIX / "stream_error.sse").read_bytes())
    assert exc.value.kind is ErrorKind.OVERLOADED


def test_stream_without_message_stop_is_protocol_error() -> None:
    dec = AnthropicStreamDecoder(MODEL)
    chunks = dec.feed((FIX / "stream_truncated.sse").read_bytes())
    assert deltas([c.data for c in chunks], "content") == "Hello"
    with pytest.raises(UpstreamError) as exc:
        dec.close()
    assert exc.value.kind is ErrorKind.PROTOCOL


def test_stream_malformed_event_and_trailing_events() -> None:
    with pytest.raises(UpstreamError) as exc:
        AnthropicStreamDecoder(MODEL).feed(b"event: message_start\ndata: {oops\n\n")
    assert exc.value.kind is ErrorKind.PROTOCOL
    data = (FIX / "stream_text.sse").read_bytes()
    assert decode(data + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":"late"}}\n\n') == decode(data)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        ("error_invalid_request.json", 400, ErrorKind.BAD_REQUEST),
        ("error_prompt_too_long.json", 400, ErrorKind.CONTEXT_LENGTH),
        ("error_authentication.json", 401, ErrorKind.AUTH),
        ("error_billing.json", 402, ErrorKind.AUTH),
        ("error_permission.json", 403, ErrorKind.AUTH),
        ("error_not_found.json", 404, ErrorKind.NOT_FOUND),
        ("error_rate_limit.json", 429, ErrorKind.RATE_LIMITED),
        ("error_spend_limit.json", 429, ErrorKind.AUTH),
        ("error_api.json", 500, ErrorKind.UPSTREAM_5XX),
        ("error_timeout.json", 504, ErrorKind.TIMEOUT),
        ("error_overloaded.json", 529, ErrorKind.OVERLOADED),
    ],
)
def test_error_classification(name: str, status: int, kind: ErrorKind) -> None:
    body = (FIX / name).read_bytes()
    err = adapter().classify_error(status, {"retry-after": "17"}, body)
    assert err.kind is kind
    assert err.status == status
    assert err.message == fixture(name)["error"]["message"]
    assert err.retry_after == 17.0
    assert err.body == fixture(name)


def test_error_without_json_body() -> None:
    err = adapter().classify_error(502, {}, b"<html>Bad Gateway</html>")
    assert err.kind is ErrorKind.UPSTREAM_5XX
    assert "Bad Gateway" in err.message
    assert err.retry_after is None
    assert adapter().classify_error(529, {}, b"").kind is ErrorKind.OVERLOADED


# -- nothing but UpstreamError escapes, whatever the input ----------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _shaped(keys: list[str], kinds: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with a plausible ``type`` and the keys translation code reads, holding anything."""
    return st.fixed_dictionaries({"type": st.sampled_from(kinds)}, optional={k: _json for k in keys})


_part = _shaped(["text", "image_url", "file", "refusal", "cache_control"],
                ["text", "image_url", "file", "refusal", "x"])
_call = st.fixed_dictionaries({}, optional={"id": _json, "type": _json, "function": st.fixed_dictionaries(
    {}, optional={"name": _json, "arguments": _json | st.just('{"a": 1}')})})
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "x"])},
    optional={"content": _json | st.lists(_part, max_size=3), "tool_calls": _json | st.lists(_call, max_size=2),
              "tool_call_id": _json, "thinking_blocks": _json, "name": _json},
)
_body = st.fixed_dictionaries(
    {"messages": st.lists(_message, max_size=4) | _json},
    optional={k: _json for k in ("tools", "tool_choice", "response_format", "max_tokens", "max_completion_tokens",
                                 "stop", "temperature", "top_p", "top_k", "n", "reasoning_effort", "thinking",
                                 "user", "parallel_tool_calls")},
)


@settings(max_examples=60, deadline=None)
@given(body=_body)
def test_build_never_raises_anything_else(body: dict[str, Any]) -> None:
    try:
        call = adapter().build(CanonicalRequest(Endpoint.CHAT, "m", body), TARGET, CREDS)
    except UpstreamError as err:
        assert err.kind is ErrorKind.BAD_REQUEST
    else:
        assert isinstance(orjson.loads(call.body or b""), dict)


_block = _shaped(["text", "id", "name", "input", "thinking", "signature", "data"],
                 ["text", "tool_use", "thinking", "redacted_thinking", "server_tool_use"])
_answer = st.fixed_dictionaries({}, optional={"content": st.lists(_block, max_size=3) | _json, "usage": _json,
                                              "stop_reason": _json, "id": _json, "model": _json, "type": _json})


@settings(max_examples=60, deadline=None)
@given(answer=_answer, json_mode=st.booleans())
def test_parse_never_raises_anything_else(answer: dict[str, Any], json_mode: bool) -> None:
    req = chat(response_format={"type": "json_object"}) if json_mode else chat()
    with contextlib.suppress(UpstreamError):
        adapter().parse(req, TARGET, 200, {}, orjson.dumps(answer))


_event = st.fixed_dictionaries(
    {"type": st.sampled_from(["message_start", "content_block_start", "content_block_delta", "message_delta",
                              "message_stop", "ping", "error", "other"])},
    optional={"message": _json, "index": _json, "content_block": _block | _json, "usage": _json, "error": _json,
              "delta": _shaped(["text", "partial_json", "thinking", "stop_reason"],
                               ["text_delta", "input_json_delta", "thinking_delta"]) | _json},
)


@settings(max_examples=60, deadline=None)
@given(events=st.lists(_event, max_size=6), junk=st.binary(max_size=40))
def test_stream_decoder_never_raises_anything_else(events: list[dict[str, Any]], junk: bytes) -> None:
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + junk
    dec = AnthropicStreamDecoder(MODEL)
    with contextlib.suppress(UpstreamError):
        dec.feed(data)
        dec.close()
