"""Cohere v2 adapter: request translation, responses, streams split at every byte, embeddings, errors."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest

from fluxway.adapters.cohere import CohereAdapter
from fluxway.adapters.registry import create_adapter
from fluxway.adapters.settings import CohereSettings
from fluxway.canonical import CanonicalRequest, Credentials, Endpoint, ErrorKind, StreamChunk, Target, UpstreamError

FIX = Path(__file__).parent.parent / "fixtures" / "cohere"
TARGET = Target("co", "command-a-03-2025")
CREDS = Credentials("co-key")
ADAPTER = CohereAdapter(CohereSettings(name="co", type="cohere", api_keys=("k",)), clock=lambda: 1_700_000_000.5)


def chat(stream: bool = False, **body: Any) -> CanonicalRequest:
    b: dict[str, Any] = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], **body}
    return CanonicalRequest(Endpoint.CHAT, "smart", b, stream=stream)


def sent(req: CanonicalRequest) -> dict[str, Any]:
    call = ADAPTER.build(req, TARGET, CREDS)
    assert call.body is not None
    out: dict[str, Any] = orjson.loads(call.body)
    return out


def test_registry_and_supports() -> None:
    adapter = create_adapter(CohereSettings(name="co", type="cohere", api_keys=("k",)))
    assert isinstance(adapter, CohereAdapter)
    assert adapter.supports(Endpoint.CHAT) and adapter.supports(Endpoint.EMBEDDINGS)
    assert not adapter.supports(Endpoint.COMPLETIONS)


def test_url_and_headers() -> None:
    call = ADAPTER.build(chat(), TARGET, CREDS)
    assert call.url == "https://api.cohere.com/v2/chat"
    assert call.headers["authorization"] == "Bearer co-key"
    assert call.headers["accept"] == "application/json"
    custom = CohereAdapter(CohereSettings(name="co", type="cohere", api_keys=("k",), base_url="http://127.0.0.1:9/v2/"))
    assert custom.build(chat(stream=True), TARGET, CREDS).url == "http://127.0.0.1:9/v2/chat"


def test_messages_translation() -> None:
    body = sent(chat(messages=[
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "dev note"}]},
        {"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"result\": \"cat\"}"},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "thanks"},
    ]))
    assert body["model"] == "command-a-03-2025"
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "dev note"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        ]},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"result\": \"cat\"}"},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "thanks"},
    ]
    assert "stream" not in body


def test_parameters_translation() -> None:
    body = sent(chat(max_completion_tokens=50, temperature=0.3, top_p=0.9, top_k=40, seed=7, stop="END",
                     frequency_penalty=0.1, presence_penalty=0.2, n=1, logit_bias={"1": 2}, user="u"))
    assert body["max_tokens"] == 50
    assert body["stop_sequences"] == ["END"]
    assert (body["temperature"], body["p"], body["k"], body["seed"]) == (0.3, 0.9, 40, 7)
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.1, 0.2)
    for dropped in ("n", "logit_bias", "user", "top_p", "max_completion_tokens", "stop"):
        assert dropped not in body
    assert sent(chat(max_tokens=9, stop=["a", "b"]))["stop_sequences"] == ["a", "b"]


def test_tools_and_tool_choice() -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "strict": True,
                                          "parameters": {"type": "object", "properties": {"location": {}}}}},
        {"type": "function", "function": {"name": "other"}},
    ]
    body = sent(chat(tools=tools, tool_choice="required"))
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                          "parameters": {"type": "object", "properties": {"location": {}}}}},
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert body["tool_choice"] == "REQUIRED"
    assert body["strict_tools"] is True
    assert sent(chat(tools=tools, tool_choice="none"))["tool_choice"] == "NONE"
    assert "tool_choice" not in sent(chat(tools=tools, tool_choice="auto"))
    named = sent(chat(tools=tools, tool_choice={"type": "function", "function": {"name": "other"}}))
    assert [t["function"]["name"] for t in named["tools"]] == ["other"]
    assert named["tool_choice"] == "REQUIRED"
    with pytest.raises(UpstreamError) as exc:
        sent(chat(tools=tools, tool_choice={"type": "function", "function": {"name": "nope"}}))
    assert exc.value.kind is ErrorKind.BAD_REQUEST


def test_response_format() -> None:
    assert sent(chat(response_format={"type": "json_object"}))["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    body = sent(chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
    assert body["response_format"] == {"type": "json_object", "json_schema": schema}
    assert "response_format" not in sent(chat(response_format={"type": "text"}))


def test_bad_inputs_are_bad_requests() -> None:
    for req in (
        chat(messages=[]),
        chat(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
        chat(messages=[{"role": "wizard", "content": "x"}]),
        chat(tools=[{"type": "custom", "custom": {"name": "x"}}]),
    ):
        with pytest.raises(UpstreamError) as exc:
            ADAPTER.build(req, TARGET, CREDS)
        assert exc.value.kind is ErrorKind.BAD_REQUEST


def test_stream_flag() -> None:
    call = ADAPTER.build(chat(stream=True), TARGET, CREDS)
    assert call.body is not None and orjson.loads(call.body)["stream"] is True
    assert call.headers["accept"] == "text/event-stream"


def test_parse_text_response() -> None:
    resp = ADAPTER.parse(chat(), TARGET, 200, {}, (FIX / "chat_response.json").read_bytes())
    choice = resp.body["choices"][0]
    assert resp.body["object"] == "chat.completion"
    assert resp.body["id"] == "chatcmpl-5a50480a-cf52-46f0-af01-53d18539bd31"
    assert resp.body["model"] == "command-a-03-2025"
    assert resp.body["created"] == 1_700_000_000
    assert choice["message"] == {"role": "assistant",
                                 "content": "The Art of API Design: Crafting Elegant and Powerful Interfaces"}
    assert choice["finish_reason"] == "stop"
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (17, 12)
    assert resp.body["usage"] == {"prompt_tokens": 17, "completion_tokens": 12, "total_tokens": 29}


def test_parse_tool_response() -> None:
    resp = ADAPTER.parse(chat(), TARGET, 200, {}, (FIX / "chat_tool_response.json").read_bytes())
    msg = resp.body["choices"][0]["message"]
    assert msg["content"] is None
    assert [c["function"]["arguments"] for c in msg["tool_calls"]] == [
        '{"location":"Madrid, Spain"}', '{"location":"Brasilia, Brazil"}']
    assert msg["tool_calls"][0]["id"] == "get_weather_dkf0akqdazjb"
    assert resp.body["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls"),
     ("max_tokens", "length"), ("content_blocked", "content_filter"), (None, "stop")],
)
def test_finish_reasons(reason: str | None, expected: str) -> None:
    data = {"id": "x", "message": {"role": "assistant", "content": [{"type": "text", "text": "t"}]},
            "finish_reason": reason, "usage": {"tokens": {"input_tokens": 3, "output_tokens": 1}}}
    resp = ADAPTER.parse(chat(), TARGET, 200, {}, orjson.dumps(data))
    assert resp.body["choices"][0]["finish_reason"] == expected
    assert resp.usage is not None and resp.usage.prompt_tokens == 3  # tokens used when billed_units are absent


@pytest.mark.parametrize(("reason", "kind"), [("ERROR", ErrorKind.UPSTREAM_5XX), ("TIMEOUT", ErrorKind.TIMEOUT)])
def test_failed_finish_reasons_raise(reason: str, kind: ErrorKind) -> None:
    data = {"id": "x", "message": {"role": "assistant", "content": []}, "finish_reason": reason}
    with pytest.raises(UpstreamError) as exc:
        ADAPTER.parse(chat(), TARGET, 200, {}, orjson.dumps(data))
    assert exc.value.kind is kind


def test_thinking_block_goes_to_reasoning_content() -> None:
    data = {"id": "x", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "42"}]}}
    msg = ADAPTER.parse(chat(), TARGET, 200, {}, orjson.dumps(data)).body["choices"][0]["message"]
    assert msg["content"] == "42" and msg["reasoning_content"] == "hmm"


def test_parse_garbage_is_protocol_error() -> None:
    for body in (b"not json", b"[1]", b'{"id": "x"}'):
        with pytest.raises(UpstreamError) as exc:
            ADAPTER.parse(chat(), TARGET, 200, {}, body)
        assert exc.value.kind is ErrorKind.PROTOCOL


def _decode(data: bytes, cut: int) -> list[StreamChunk]:
    dec = ADAPTER.stream_decoder(chat(stream=True), TARGET)
    return dec.feed(data[:cut]) + dec.feed(data[cut:]) + dec.close()


def _deltas(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [c.data["choices"][0]["delta"] for c in chunks if c.data["choices"]]


def test_text_stream_at_every_split() -> None:
    data = (FIX / "chat_stream.sse").read_bytes()
    expected = [c.data for c in _decode(data, len(data))]
    for cut in range(len(data) + 1):
        assert [c.data for c in _decode(data, cut)] == expected, cut
    chunks = _decode(data, 0)
    assert all(c.data["id"] == "chatcmpl-29f14a5a-11de-4cae-9800-25e4747408ea" for c in chunks)
    assert all(c.data["object"] == "chat.completion.chunk" for c in chunks)
    assert _deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "A"}, {"content": " large"},
                               {"content": " language model"}, {}]
    assert chunks[-2].data["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1].data["choices"] == []
    assert chunks[-1].data["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_tool_stream_at_every_split() -> None:
    data = (FIX / "chat_tool_stream.sse").read_bytes()
    expected = [c.data for c in _decode(data, len(data))]
    for cut in range(len(data) + 1):
        assert [c.data for c in _decode(data, cut)] == expected, cut
    chunks = _decode(data, 0)
    calls = [d["tool_calls"][0] for d in _deltas(chunks) if "tool_calls" in d]
    assert calls[0] == {"index": 0, "id": "get_weather_dkf0akqdazjb", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    args0 = "".join(c["function"]["arguments"] for c in calls if c["index"] == 0)
    args1 = "".join(c["function"]["arguments"] for c in calls if c["index"] == 1)
    assert orjson.loads(args0) == {"location": "Madrid, Spain"}
    assert orjson.loads(args1) == {"location": "Brasilia, Brazil"}
    assert [c.get("id") for c in calls if "id" in c] == ["get_weather_dkf0akqdazjb", "get_weather_gh65bt2tcdy1"]
    # The tool plan is not content.
    assert not any("content" in d and d["content"] for d in _deltas(chunks))
    assert chunks[-2].data["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_without_message_end_is_protocol_error() -> None:
    data = (FIX / "chat_stream.sse").read_bytes()
    dec = ADAPTER.stream_decoder(chat(stream=True), TARGET)
    dec.feed(data[: data.index(b"event: message-end")])
    with pytest.raises(UpstreamError) as exc:
        dec.close()
    assert exc.value.kind is ErrorKind.PROTOCOL


def test_stream_error_finish_raises() -> None:
    dec = ADAPTER.stream_decoder(chat(stream=True), TARGET)
    ev = b'data: {"type":"message-end","delta":{"finish_reason":"ERROR","error":"internal failure"}}\n\n'
    with pytest.raises(UpstreamError, match="internal failure") as exc:
        dec.feed(ev)
    assert exc.value.kind is ErrorKind.UPSTREAM_5XX


def test_stream_malformed_event() -> None:
    dec = ADAPTER.stream_decoder(chat(stream=True), TARGET)
    with pytest.raises(UpstreamError) as exc:
        dec.feed(b"data: {nope\n\n")
    assert exc.value.kind is ErrorKind.PROTOCOL


def _embed(body: dict[str, Any]) -> CanonicalRequest:
    return CanonicalRequest(Endpoint.EMBEDDINGS, "emb", {"model": "emb", **body})


def test_embeddings_request() -> None:
    call = ADAPTER.build(_embed({"input": ["hello", "goodbye"], "dimensions": 256}), Target("co", "embed-v4.0"), CREDS)
    assert call.url == "https://api.cohere.com/v2/embed"
    assert call.body is not None
    assert orjson.loads(call.body) == {"model": "embed-v4.0", "texts": ["hello", "goodbye"],
                                       "input_type": "search_document", "embedding_types": ["float"],
                                       "output_dimension": 256}
    one = ADAPTER.build(_embed({"input": "q", "input_type": "search_query"}), TARGET, CREDS)
    assert one.body is not None and orjson.loads(one.body)["input_type"] == "search_query"
    with pytest.raises(UpstreamError) as exc:
        ADAPTER.build(_embed({"input": [1, 2, 3]}), TARGET, CREDS)
    assert exc.value.kind is ErrorKind.BAD_REQUEST


def test_embeddings_response_float_and_base64() -> None:
    raw = (FIX / "embed_response.json").read_bytes()
    resp = ADAPTER.parse(_embed({"input": ["hello", "goodbye"]}), Target("co", "embed-v4.0"), 200, {}, raw)
    assert resp.body["object"] == "list"
    assert [d["index"] for d in resp.body["data"]] == [0, 1]
    assert resp.body["data"][0]["embedding"] == [0.016296387, -0.008354187, -0.04699707]
    assert resp.body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert resp.usage is not None and resp.usage.prompt_tokens == 2
    b64 = ADAPTER.parse(_embed({"input": ["a", "b"], "encoding_format": "base64"}), TARGET, 200, {}, raw)
    decoded = struct.unpack("<3f", base64.b64decode(b64.body["data"][1]["embedding"]))
    assert decoded == pytest.approx([-0.0061302185, 0.0231781, 0.0105285645])


@pytest.mark.parametrize(
    ("status", "fixture", "kind"),
    [
        (429, "error_429.json", ErrorKind.RATE_LIMITED),
        (401, "error_401.json", ErrorKind.AUTH),
        (498, "error_401.json", ErrorKind.AUTH),
        (400, "error_400_too_long.json", ErrorKind.CONTEXT_LENGTH),
    ],
)
def test_error_fixtures(status: int, fixture: str, kind: ErrorKind) -> None:
    with pytest.raises(UpstreamError) as exc:
        ADAPTER.parse(chat(), TARGET, status, {"retry-after": "3"}, (FIX / fixture).read_bytes())
    assert exc.value.kind is kind
    assert exc.value.status == status
    assert exc.value.retry_after == 3.0
    assert exc.value.message == orjson.loads((FIX / fixture).read_bytes())["message"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, ErrorKind.BAD_REQUEST), (404, ErrorKind.NOT_FOUND), (422, ErrorKind.BAD_REQUEST),
     (499, ErrorKind.UPSTREAM_5XX), (500, ErrorKind.UPSTREAM_5XX), (503, ErrorKind.OVERLOADED),
     (504, ErrorKind.TIMEOUT)],
)
def test_error_statuses(status: int, kind: ErrorKind) -> None:
    err = ADAPTER.classify_error(status, {}, b'{"message": "something"}')
    assert err.kind is kind and err.message == "something"
    assert ADAPTER.classify_error(status, {}, b"<html>").message == "<html>"


async def test_gateway_embeddings_end_to_end() -> None:
    """openai SDK embeddings (base64 by default) -> gateway -> a local Cohere /v2/embed."""
    import openai

    from tests.support.gateway import run_gateway
    from tests.support.replies import replying
    from tests.support.upstream import FakeUpstream

    answer = orjson.loads((FIX / "embed_response.json").read_bytes())
    async with FakeUpstream() as up:
        up.route("POST", "/v2/embed", replying(answer))
        config = {
            "providers": [{"name": "co", "type": "cohere", "base_url": up.url, "api_keys": ["co-key"]}],
            "models": [{"name": "emb", "targets": [{"provider": "co", "model": "embed-v4.0"}]}],
        }
        async with run_gateway(config) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            resp = await client.embeddings.create(model="emb", input=["hello", "goodbye"])
            assert [d.index for d in resp.data] == [0, 1]
            assert resp.data[0].embedding == pytest.approx([0.016296387, -0.008354187, -0.04699707])
            assert resp.usage.prompt_tokens == 2
        sent = up.requests[0]
        assert sent.headers["authorization"] == "Bearer co-key"
        assert sent.json() == {"model": "embed-v4.0", "texts": ["hello", "goodbye"],
                               "input_type": "search_document", "embedding_types": ["float"]}
