"""Bedrock adapter: Converse translation (validated against botocore's service model), SigV4 and Bearer
auth, responses, ConverseStream decoding at every byte split, embeddings, errors, config env fallback."""

from __future__ import annotations

import datetime
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.eventstream import EventStreamBuffer
from botocore.validate import ParamValidator

from fluxway.adapters.bedrock import BedrockAdapter
from fluxway.adapters.bedrock.request import converse_body
from fluxway.adapters.eventstream import encode_event, encode_exception, encode_message
from fluxway.adapters.registry import create_adapter
from fluxway.adapters.settings import BedrockSettings
from fluxway.adapters.toolkit import JSON_TOOL
from fluxway.canonical import CanonicalRequest, Credentials, Endpoint, ErrorKind, StreamChunk, Target, UpstreamError
from fluxway.config import ConfigError, parse

FIX = Path(__file__).parent.parent / "fixtures" / "bedrock"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
TARGET = Target("br", MODEL)
KEYS = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def adapter(**kw: Any) -> BedrockAdapter:
    cfg: dict[str, Any] = {"name": "br", "type": "bedrock", "region": "us-west-2", **KEYS, **kw}
    return BedrockAdapter(BedrockSettings(**cfg), clock=lambda: NOW)


def chat(stream: bool = False, **body: Any) -> CanonicalRequest:
    b: dict[str, Any] = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], **body}
    return CanonicalRequest(Endpoint.CHAT, "smart", b, stream=stream)


@cache
def _converse_shape() -> Any:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    return model.operation_model("Converse").input_shape


def converse(req: CanonicalRequest) -> dict[str, Any]:
    """The Converse body we send, checked against botocore's bedrock-runtime service model."""
    call = adapter().build(req, TARGET, Credentials(None))
    assert call.body is not None
    body: dict[str, Any] = orjson.loads(call.body)
    report = ParamValidator().validate({"modelId": MODEL, **body}, _converse_shape())
    assert not report.has_errors(), report.generate_report()
    return body


# -- wiring, URLs and auth ----------------------------------------------------------------------


def test_registry_and_supports() -> None:
    a = create_adapter(BedrockSettings(name="br", type="bedrock", region="eu-west-1", **KEYS))
    assert isinstance(a, BedrockAdapter)
    assert a.supports(Endpoint.CHAT) and a.supports(Endpoint.EMBEDDINGS)
    assert not a.supports(Endpoint.COMPLETIONS)


def test_urls_encode_the_model_id() -> None:
    # As botocore sends the non-greedy {modelId} label: ':' as %3A, '/' (in ARNs) as %2F (the
    # transport sends URLs as they are built, so the signed path is the path sent).
    a = adapter()
    assert a.build(chat(), TARGET, Credentials(None)).url == (
        "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    )
    arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
    call = a.build(chat(stream=True), Target("br", arn), Credentials(None))
    assert call.url == (
        "https://bedrock-runtime.us-west-2.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3A"
        "inference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    )
    assert call.headers["accept"] == "application/vnd.amazon.eventstream"
    assert adapter(base_url="http://127.0.0.1:9/").build(chat(), TARGET, Credentials(None)).url.startswith(
        "http://127.0.0.1:9/model/"
    )


def test_sigv4_matches_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    a = adapter(aws_session_token="SESSIONTOKEN")
    call = a.build(chat(), TARGET, Credentials(None))
    assert call.headers["x-amz-date"] == "20260101T000000Z"
    assert call.headers["x-amz-security-token"] == "SESSIONTOKEN"
    assert call.headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-west-2/bedrock/aws4_request, "
    )
    fixed = datetime.datetime(2026, 1, 1)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: fixed)
    unsigned = {k: v for k, v in call.headers.items() if k not in ("authorization", "x-amz-date",
                                                                     "x-amz-security-token")}
    request = AWSRequest(method="POST", url=call.url, headers=unsigned, data=call.body)
    creds = BotoCredentials(KEYS["aws_access_key_id"], KEYS["aws_secret_access_key"], "SESSIONTOKEN")
    SigV4Auth(creds, "bedrock", "us-west-2").add_auth(request)
    assert request.headers["Authorization"] == call.headers["authorization"]


def test_bearer_api_key_skips_signing() -> None:
    call = adapter().build(chat(), TARGET, Credentials("bedrock-api-key-abc"))
    assert call.headers["authorization"] == "Bearer bedrock-api-key-abc"
    assert "x-amz-date" not in call.headers


def test_credentials_extra_override_config_keys() -> None:
    extra = {"aws_access_key_id": "AKIDOTHER", "aws_secret_access_key": "s"}
    call = adapter().build(chat(), TARGET, Credentials(None, extra))
    assert "Credential=AKIDOTHER/" in call.headers["authorization"]


def test_no_credentials_is_auth_error() -> None:
    a = BedrockAdapter(BedrockSettings(name="br", type="bedrock", region="us-east-1"))
    with pytest.raises(UpstreamError) as exc:
        a.build(chat(), TARGET, Credentials(None))
    assert exc.value.kind is ErrorKind.AUTH


# -- request translation --------------------------------------------------------------------------


def test_system_user_assistant_and_params() -> None:
    body = converse(chat(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "use metric"}]},
            {"role": "user", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "again"}, {"type": "text", "text": "  "}]},
            {"role": "assistant", "content": "Hi! "},
        ],
        max_tokens=100, temperature=0.5, top_p=0.9, stop="END", top_k=20, seed=3, n=1, user="u",
        frequency_penalty=0.3, logprobs=True,
    ))
    assert body["system"] == [{"text": "be brief"}, {"text": "use metric"}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "hello"}, {"text": "again"}]},
        {"role": "assistant", "content": [{"text": "Hi!"}]},  # final assistant text right-trimmed
    ]
    assert body["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]}
    assert body["additionalModelRequestFields"] == {"top_k": 20}
    assert set(body) == {"system", "messages", "inferenceConfig", "additionalModelRequestFields"}
    assert converse(chat(max_completion_tokens=7, stop=["a", "b"]))["inferenceConfig"] == {
        "maxTokens": 7, "stopSequences": ["a", "b"]}


def test_images_and_documents() -> None:
    body = converse(chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "s3://bucket/cat.webp"}},
        {"type": "file", "file": {"filename": "Q3 report (final).pdf",
                                  "file_data": "data:application/pdf;base64,JVBERi0="}},
    ]}]))
    content = body["messages"][0]["content"]
    assert content[1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert content[2] == {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}
    assert content[3] == {"image": {"format": "webp", "source": {"s3Location": {"uri": "s3://bucket/cat.webp"}}}}
    assert content[4] == {"document": {"format": "pdf", "name": "Q3 report (final)", "source": {"bytes": "JVBERi0="}}}


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-123"}},
    ],
)
def test_unsupported_parts_are_bad_requests(part: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError) as exc:
        adapter().build(chat(messages=[{"role": "user", "content": [part]}]), TARGET, Credentials(None))
    assert exc.value.kind is ErrorKind.BAD_REQUEST


def test_tool_calls_and_results() -> None:
    tools = [{"type": "function", "function": {"name": "top_song", "description": "Top song on a station",
                                                "parameters": {"type": "object", "properties": {"sign": {
                                                    "type": "string"}}, "required": ["sign"]}}}]
    body = converse(chat(tools=tools, tool_choice="auto", parallel_tool_calls=False, messages=[
        {"role": "user", "content": "top songs on WZPZ and WKRP?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "top_song", "arguments": "{\"sign\":\"WZPZ\"}"}},
            {"id": "t2", "type": "function", "function": {"name": "top_song", "arguments": "{\"sign\":\"WKRP\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "t1", "content": "Elemental Hotel"},
        {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "Rock On"}]},
        {"role": "user", "content": "thanks, and?"},
    ]))
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "t1", "name": "top_song", "input": {"sign": "WZPZ"}}},
        {"toolUse": {"toolUseId": "t2", "name": "top_song", "input": {"sign": "WKRP"}}},
    ]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "Elemental Hotel"}]}},
        {"toolResult": {"toolUseId": "t2", "content": [{"text": "Rock On"}]}},
        {"text": "thanks, and?"},
    ]}
    assert body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "top_song", "description": "Top song on a station", "inputSchema": {
            "json": {"type": "object", "properties": {"sign": {"type": "string"}}, "required": ["sign"]}}}}],
        "toolChoice": {"auto": {}},
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("required", {"any": {}}), ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
     (None, None)],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    extra = {"tool_choice": choice} if choice is not None else {}
    body = converse(chat(tools=[{"type": "function", "function": {"name": "f"}}], **extra))
    assert body["toolConfig"].get("toolChoice") == expected
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object", "properties": {}}}


def test_tool_choice_none_drops_tools_without_history() -> None:
    assert "toolConfig" not in converse(chat(tools=[{"type": "function", "function": {"name": "f"}}],
                                             tool_choice="none"))


def test_tool_history_without_tools_gets_a_tool_config() -> None:
    body = converse(chat(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function",
                                              "function": {"name": "lookup", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t", "content": ""},
    ]))
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "lookup"
    assert body["messages"][1]["content"][0]["toolUse"]["input"] == {}
    assert body["messages"][2]["content"][0]["toolResult"]["content"] == [{"text": "(empty)"}]


def test_bad_tool_arguments_are_bad_request() -> None:
    msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]
    with pytest.raises(UpstreamError) as exc:
        converse_body({"messages": msgs})
    assert exc.value.kind is ErrorKind.BAD_REQUEST


def test_json_schema_uses_output_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    body = converse(chat(response_format={"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}))
    fmt = body["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema"
    assert fmt["structure"]["jsonSchema"]["name"] == "thing"
    assert orjson.loads(fmt["structure"]["jsonSchema"]["schema"]) == schema


def test_json_object_forces_the_json_tool() -> None:
    body = converse(chat(response_format={"type": "json_object"}))
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL}}
    assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == [JSON_TOOL]
    history = [{"role": "user", "content": "x"},
               {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "t", "content": "1"}]
    body = converse(chat(response_format={"type": "json_object"}, messages=history))
    assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == ["f", JSON_TOOL]


def test_empty_or_bad_messages() -> None:
    for msgs in ([], "x", [{"role": "wizard", "content": "x"}], [3]):
        with pytest.raises(UpstreamError) as exc:
            converse_body({"messages": msgs})
        assert exc.value.kind is ErrorKind.BAD_REQUEST


# -- responses ------------------------------------------------------------------------------------


def test_parse_text_response() -> None:
    resp = adapter().parse(chat(), TARGET, 200, {"x-amzn-requestid": "req-1"},
                           (FIX / "converse_response.json").read_bytes())
    assert resp.body["id"] == "chatcmpl-req-1"
    assert resp.body["object"] == "chat.completion"
    assert resp.body["created"] == int(NOW)
    assert resp.body["model"] == MODEL
    choice = resp.body["choices"][0]
    assert choice["message"] == {"role": "assistant",
                                 "content": "The most popular song on WZPZ is Elemental Hotel by 8 Storey Hike."}
    assert choice["finish_reason"] == "stop"
    assert resp.body["usage"] == {"prompt_tokens": 30, "completion_tokens": 628, "total_tokens": 658}


def test_parse_tool_response_with_cache_usage() -> None:
    resp = adapter().parse(chat(), TARGET, 200, {}, (FIX / "converse_tool_response.json").read_bytes())
    msg = resp.body["choices"][0]["message"]
    assert msg["content"] == "I'll look up the top song for that station."
    assert msg["tool_calls"] == [{"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
                                  "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'}}]
    assert resp.body["choices"][0]["finish_reason"] == "tool_calls"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.cached_tokens, resp.usage.completion_tokens) == (495, 100, 63)
    assert resp.body["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
     ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
     ("model_context_window_exceeded", "length"), ("malformed_model_output", "stop")],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    data = {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": stop}
    assert adapter().parse(chat(), TARGET, 200, {}, orjson.dumps(data)).body["choices"][0]["finish_reason"] == finish


def test_json_mode_response_becomes_content() -> None:
    data = {"output": {"message": {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "t", "name": JSON_TOOL, "input": {"answer": 42}}}]}}, "stopReason": "tool_use"}
    resp = adapter().parse(chat(response_format={"type": "json_object"}), TARGET, 200, {}, orjson.dumps(data))
    choice = resp.body["choices"][0]
    assert orjson.loads(choice["message"]["content"]) == {"answer": 42}
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"


def test_reasoning_content() -> None:
    data = {"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "think", "signature": "sig"}}}, {"text": "done"}]}},
        "stopReason": "end_turn"}
    msg = adapter().parse(chat(), TARGET, 200, {}, orjson.dumps(data)).body["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": "done", "reasoning_content": "think",
                   "thinking_blocks": [{"type": "thinking", "thinking": "think", "signature": "sig"}]}
    redacted = {"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"redactedContent": "b64=="}}, {"text": "ok"}]}}, "stopReason": "end_turn"}
    msg = adapter().parse(chat(), TARGET, 200, {}, orjson.dumps(redacted)).body["choices"][0]["message"]
    assert msg["thinking_blocks"] == [{"type": "redacted_thinking", "data": "b64=="}]
    assert "reasoning_content" not in msg


def test_extended_thinking_for_claude() -> None:
    turns = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "thinking_blocks": [
            {"type": "thinking", "thinking": "add", "signature": "SIG"},
            {"type": "redacted_thinking", "data": "Zm9v"}]},
        {"role": "user", "content": "and 3+3?"},
    ]
    body = converse(chat(messages=turns, thinking={"type": "enabled", "budget_tokens": 2048}, top_k=5))
    assert body["additionalModelRequestFields"] == {"top_k": 5,
                                                    "thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "add", "signature": "SIG"}}},
        {"reasoningContent": {"redactedContent": "Zm9v"}},
        {"text": "4"},
    ]
    effort = converse(chat(reasoning_effort="low"))
    assert effort["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    # without thinking requested, earlier thinking blocks are not replayed
    assert converse(chat(messages=turns))["messages"][1]["content"] == [{"text": "4"}]
    # other model families get no thinking field
    other = converse_body({"messages": turns, "reasoning_effort": "high"}, "meta.llama3-70b-instruct-v1:0")
    assert "additionalModelRequestFields" not in other


def test_parse_garbage_is_protocol_error() -> None:
    for body in (b"<html>", b"[]", b'{"output": {}}'):
        with pytest.raises(UpstreamError) as exc:
            adapter().parse(chat(), TARGET, 200, {}, body)
        assert exc.value.kind is ErrorKind.PROTOCOL


# -- streaming ------------------------------------------------------------------------------------


def _stream_bytes(name: str) -> bytes:
    lines = (FIX / name).read_text().splitlines()
    return b"".join(encode_event(e["event"], orjson.dumps(e["payload"])) for e in map(orjson.loads, lines))


def _decode(req: CanonicalRequest, data: bytes, cut: int) -> list[StreamChunk]:
    dec = adapter().stream_decoder(req, TARGET)
    return dec.feed(data[:cut]) + dec.feed(data[cut:]) + dec.close()


def _check_every_split(req: CanonicalRequest, data: bytes) -> list[dict[str, Any]]:
    expected = [c.data for c in _decode(req, data, len(data))]
    for cut in range(len(data) + 1):
        got = [c.data for c in _decode(req, data, cut)]
        # ids are random per decoder: compare everything else
        assert [{**g, "id": ""} for g in got] == [{**e, "id": ""} for e in expected], cut
    return expected


def test_fixture_streams_decode_with_botocore_too() -> None:
    for name in ("converse_stream.jsonl", "converse_tool_stream.jsonl"):
        buf = EventStreamBuffer()
        buf.add_data(_stream_bytes(name))
        events = [(m.headers[":event-type"], orjson.loads(m.payload)) for m in buf]
        lines = [orjson.loads(line) for line in (FIX / name).read_text().splitlines()]
        assert events == [(e["event"], e["payload"]) for e in lines]


def test_text_stream_every_split() -> None:
    chunks = _check_every_split(chat(stream=True), _stream_bytes("converse_stream.jsonl"))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Elemental"}, {"content": " Hotel"}, {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    assert len({c["id"] for c in chunks}) == 1


def test_tool_stream_every_split() -> None:
    chunks = _check_every_split(chat(stream=True), _stream_bytes("converse_tool_stream.jsonl"))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
             if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0] == {"index": 0, "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
                        "function": {"name": "top_song", "arguments": ""}}
    by_index: dict[int, str] = {}
    for c in calls:
        by_index[c["index"]] = by_index.get(c["index"], "") + c["function"]["arguments"]
    assert {i: orjson.loads(a) for i, a in by_index.items()} == {0: {"sign": "WZPZ"}, 1: {"sign": "WKRP"}}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}


def test_json_mode_stream_becomes_content() -> None:
    data = b"".join([
        encode_event("messageStart", b'{"role":"assistant"}'),
        encode_event("contentBlockStart", orjson.dumps(
            {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL}}})),
        encode_event("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\\"a\\":"}}}'),
        encode_event("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"toolUse":{"input":"1}"}}}'),
        encode_event("contentBlockStop", b'{"contentBlockIndex":0}'),
        encode_event("messageStop", b'{"stopReason":"tool_use"}'),
    ])
    chunks = _check_every_split(chat(stream=True, response_format={"type": "json_object"}), data)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert orjson.loads(text) == {"a": 1}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_reasoning_stream_delta() -> None:
    data = encode_event("messageStart", b'{"role":"assistant"}') + encode_event(
        "contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hmm"}}}')
    chunks = adapter().stream_decoder(chat(stream=True), TARGET).feed(data)
    assert chunks[1].data["choices"][0]["delta"] == {"reasoning_content": "hmm"}


def test_reasoning_stream_keeps_signature_and_redacted_content() -> None:
    events = [("messageStart", {"role": "assistant"}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "add "}}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "them"}}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "SIG"}}}),
              ("contentBlockStop", {"contentBlockIndex": 0}),
              ("contentBlockDelta", {"contentBlockIndex": 1,
                                     "delta": {"reasoningContent": {"redactedContent": "Zm9v"}}}),
              ("contentBlockStop", {"contentBlockIndex": 1}),
              ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "4"}}),
              ("contentBlockStop", {"contentBlockIndex": 2}),
              ("messageStop", {"stopReason": "end_turn"})]
    data = b"".join(encode_event(name, orjson.dumps(payload)) for name, payload in events)
    chunks = _check_every_split(chat(stream=True), data)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d] == [
        [{"type": "thinking", "thinking": "add them", "signature": "SIG", "index": 0}],
        [{"type": "redacted_thinking", "data": "Zm9v", "index": 1}]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "add them"


@pytest.mark.parametrize(
    ("exception", "kind"),
    [("throttlingException", ErrorKind.RATE_LIMITED), ("modelStreamErrorException", ErrorKind.UPSTREAM_5XX),
     ("internalServerException", ErrorKind.UPSTREAM_5XX), ("serviceUnavailableException", ErrorKind.OVERLOADED),
     ("validationException", ErrorKind.BAD_REQUEST)],
)
def test_stream_exceptions(exception: str, kind: ErrorKind) -> None:
    dec = adapter().stream_decoder(chat(stream=True), TARGET)
    dec.feed(encode_event("messageStart", b'{"role":"assistant"}'))
    msg = encode_exception(exception, b'{"message":"it broke"}')
    with pytest.raises(UpstreamError, match="it broke") as exc:
        dec.feed(msg[:10])
        dec.feed(msg[10:])
    assert exc.value.kind is kind


def test_stream_error_message_type() -> None:
    msg = encode_message({":message-type": "error", ":error-code": "InternalFailure",
                          ":error-message": "boom"}, b"")
    with pytest.raises(UpstreamError, match="boom") as exc:
        adapter().stream_decoder(chat(stream=True), TARGET).feed(msg)
    assert exc.value.kind is ErrorKind.UPSTREAM_5XX


def test_stream_cut_short() -> None:
    data = _stream_bytes("converse_stream.jsonl")
    for end in (len(data) - 3, data.index(b"messageStop") - 20):
        dec = adapter().stream_decoder(chat(stream=True), TARGET)
        dec.feed(data[:end])
        with pytest.raises(UpstreamError) as exc:
            dec.close()
        assert exc.value.kind is ErrorKind.PROTOCOL


# -- embeddings -----------------------------------------------------------------------------------


def _embed(**body: Any) -> CanonicalRequest:
    return CanonicalRequest(Endpoint.EMBEDDINGS, "emb", {"model": "emb", **body})


def test_titan_embeddings() -> None:
    target = Target("br", "amazon.titan-embed-text-v2:0")
    call = adapter().build(_embed(input="hello world", dimensions=256), target, Credentials(None))
    assert call.url.endswith("/model/amazon.titan-embed-text-v2%3A0/invoke")
    assert call.body is not None and orjson.loads(call.body) == {"inputText": "hello world", "dimensions": 256}
    resp = adapter().parse(_embed(input="hello world"), target, 200, {},
                           (FIX / "titan_embed_response.json").read_bytes())
    assert resp.body["data"] == [{"object": "embedding", "index": 0, "embedding": [0.0152, -0.0261, 0.0458, -0.0133]}]
    assert resp.body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert resp.body["model"] == "amazon.titan-embed-text-v2:0"
    with pytest.raises(UpstreamError) as exc:
        adapter().build(_embed(input=["a", "b"]), target, Credentials(None))
    assert exc.value.kind is ErrorKind.BAD_REQUEST


def test_cohere_embeddings_on_bedrock() -> None:
    target = Target("br", "cohere.embed-english-v3")
    call = adapter().build(_embed(input=["hello", "goodbye"], input_type="search_query"), target, Credentials(None))
    assert call.body is not None and orjson.loads(call.body) == {
        "texts": ["hello", "goodbye"], "input_type": "search_query", "embedding_types": ["float"]}
    resp = adapter().parse(_embed(input=["hello", "goodbye"]), target, 200,
                           {"x-amzn-bedrock-input-token-count": "2"}, (FIX / "cohere_embed_response.json").read_bytes())
    assert [d["embedding"] for d in resp.body["data"]] == [[0.0211, -0.0364, 0.0147], [-0.0098, 0.0275, 0.0512]]
    assert resp.usage is not None and resp.usage.prompt_tokens == 2


def test_unknown_embedding_model() -> None:
    with pytest.raises(UpstreamError) as exc:
        adapter().build(_embed(input="x"), Target("br", "meta.llama3-8b-instruct-v1:0"), Credentials(None))
    assert exc.value.kind is ErrorKind.BAD_REQUEST


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", orjson.loads((FIX / "errors.json").read_bytes()), ids=lambda c: c["body"].get(
    "__type") or c["headers"].get("x-amzn-errortype", "").split(":")[0] + "-" + c["kind"])
def test_error_fixtures(case: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError) as exc:
        adapter().parse(chat(), TARGET, case["status"], case["headers"], orjson.dumps(case["body"]))
    assert exc.value.kind is ErrorKind(case["kind"])
    assert exc.value.status == case["status"]
    assert (case["body"].get("message") or case["body"].get("Message")) in exc.value.message


def test_error_without_type_uses_status() -> None:
    assert adapter().classify_error(429, {"retry-after": "2"}, b"").kind is ErrorKind.RATE_LIMITED
    assert adapter().classify_error(429, {"retry-after": "2"}, b"").retry_after == 2.0
    assert adapter().classify_error(502, {}, b"<html>bad gateway</html>").kind is ErrorKind.UPSTREAM_5XX


# -- config: AWS_* environment fallback (read in config.py, never in the adapter) ------------------


def _provider(env: dict[str, str], **p: Any) -> BedrockSettings:
    cfg = parse({"providers": [{"name": "br", "type": "bedrock", **p}]}, env=env)
    return cfg.providers[0]


def test_config_env_fallback() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secretenv", "AWS_SESSION_TOKEN": "tok",
           "AWS_DEFAULT_REGION": "eu-central-1"}
    p = _provider(env)
    assert (p.aws_access_key_id, p.aws_secret_access_key, p.aws_session_token, p.region) == (
        "AKIDENV", "secretenv", "tok", "eu-central-1")
    assert _provider({**env, "AWS_REGION": "ap-south-1"}).region == "ap-south-1"
    explicit = _provider(env, region="us-east-2", aws_access_key_id="AKIDCFG", aws_secret_access_key="s")
    assert (explicit.aws_access_key_id, explicit.aws_session_token, explicit.region) == ("AKIDCFG", None, "us-east-2")
    with_key = _provider(env, api_keys=["bedrock-key"])
    assert with_key.aws_access_key_id is None and with_key.region == "eu-central-1"


def test_config_bedrock_problems() -> None:
    with pytest.raises(ConfigError) as exc:
        parse({"providers": [{"name": "br", "type": "bedrock"}]}, env={"AWS_ACCESS_KEY_ID": "only-half"})
    text = "\n".join(exc.value.problems)
    assert "providers[0].region" in text
    assert "providers[0].aws_access_key_id" in text


# -- end to end: openai SDK -> gateway -> a local Bedrock that checks the SigV4 signature ----------


async def test_gateway_end_to_end_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    import openai
    from aiohttp import web

    from tests.support.gateway import run_gateway
    from tests.support.replies import Handler, json_reply, replying, streaming
    from tests.support.upstream import FakeUpstream

    def signature_ok(request: web.Request, body: bytes) -> bool:
        auth = request.headers["Authorization"]
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        stamp = datetime.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: stamp)
        headers = {k: v for k, v in request.headers.items() if k.lower() in signed and k.lower() != "x-amz-date"}
        # the raw (still percent-encoded) path is what AWS canonicalises
        url = f"http://{request.host}{request.raw_path}"
        check = AWSRequest(method=request.method, url=url, headers=headers, data=body)
        SigV4Auth(BotoCredentials(KEYS["aws_access_key_id"], KEYS["aws_secret_access_key"]), "bedrock",
                  "us-west-2").add_auth(check)
        return bool(check.headers["Authorization"] == auth)

    def signed(then: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not signature_ok(request, await request.read()):
                return json_reply({"message": "The request signature we calculated does not match"}, 403,
                                  {"x-amzn-errortype": "InvalidSignatureException"})
            return await then(request)

        return handle

    converse_handler = signed(replying(orjson.loads((FIX / "converse_response.json").read_bytes()),
                                       headers={"x-amzn-requestid": "e2e-1"}))
    data = _stream_bytes("converse_stream.jsonl")
    frames = [data[i : i + 37] for i in range(0, len(data), 37)]
    stream_handler = signed(streaming(frames, content_type="application/vnd.amazon.eventstream"))

    async with FakeUpstream() as up:
        up.route("POST", f"/model/{MODEL}/converse", converse_handler)
        up.route("POST", f"/model/{MODEL}/converse-stream", stream_handler)
        arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
        up.route("POST", f"/model/{arn}/converse", converse_handler)
        config = {
            "providers": [{"name": "br", "type": "bedrock", "base_url": up.url, "region": "us-west-2", **KEYS}],
            "models": [{"name": "claude", "targets": [{"provider": "br", "model": MODEL}]},
                       {"name": "profile", "targets": [{"provider": "br", "model": arn}]}],
        }
        async with run_gateway(config) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            resp = await client.chat.completions.create(
                model="claude", messages=[{"role": "user", "content": "top song on WZPZ?"}], max_tokens=50)
            assert resp.choices[0].message.content is not None
            assert resp.choices[0].message.content.startswith("The most popular song")
            assert resp.usage is not None and resp.usage.total_tokens == 658
            stream = await client.chat.completions.create(
                model="claude", messages=[{"role": "user", "content": "again"}], stream=True,
                stream_options={"include_usage": True})
            text, usage = "", None
            async for ch in stream:
                if ch.choices:
                    text += ch.choices[0].delta.content or ""
                if ch.usage:
                    usage = ch.usage
            assert text == "Elemental Hotel"
            assert usage is not None and usage.prompt_tokens == 30
            by_arn = await client.chat.completions.create(model="profile", messages=[{"role": "user", "content": "x"}])
            assert by_arn.choices[0].finish_reason == "stop"
        sent = up.requests[0]
        assert sent.path == f"/model/{MODEL}/converse"
        assert sent.json()["messages"] == [{"role": "user", "content": [{"text": "top song on WZPZ?"}]}]
        assert sent.json()["inferenceConfig"] == {"maxTokens": 50}


def test_conformance_stream_fixture_matches_its_source() -> None:
    """conformance/converse_stream.bin is conformance/converse_stream.jsonl, encoded (botocore agrees)."""
    folder = FIX / "conformance"
    buf = EventStreamBuffer()
    buf.add_data((folder / "converse_stream.bin").read_bytes())
    events = [(m.headers[":event-type"], orjson.loads(m.payload)) for m in buf]
    lines = [orjson.loads(line) for line in (folder / "converse_stream.jsonl").read_text().splitlines()]
    assert events == [(e["event"], e["payload"]) for e in lines]


def test_config_bedrock_api_key_from_env() -> None:
    env = {"AWS_BEARER_TOKEN_BEDROCK": "bedrock-api-key", "AWS_ACCESS_KEY_ID": "AKIDENV",
           "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}
    p = _provider(env)
    assert p.api_keys == ("bedrock-api-key",) and p.aws_access_key_id is None and p.region == "us-east-1"
    configured = _provider(env, aws_access_key_id="AKIDCFG", aws_secret_access_key="s")
    assert configured.api_keys == () and configured.aws_access_key_id == "AKIDCFG"
