"""Gemini adapter: request translation (golden files + each mapping), answers, streams, embeddings, errors."""

from __future__ import annotations

import base64
import contextlib
import copy
import re
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxway.adapters.gemini import GeminiAdapter
from fluxway.adapters.gemini.stream import GeminiStreamDecoder
from fluxway.adapters.gemini.wire import make_call_id, signature_of
from fluxway.adapters.registry import create_adapter
from fluxway.adapters.settings import GeminiSettings
from fluxway.canonical import CanonicalRequest, Credentials, Endpoint, ErrorKind, StreamChunk, Target, UpstreamError

FIX = Path(__file__).parent.parent / "fixtures" / "gemini"
MODEL = "gemini-2.5-flash"
TARGET = Target("gem", MODEL)
CREDS = Credentials("AIza-test")
TEXT = "Hello! How can I help you today?"
SIG = "CiQB0e2Kb3dRh+BYdbZvmulSN2Pwwc75DfBvc6Pzt4kgOqHIsPcSeQHR7Y"
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


def fixture(name: str) -> Any:
    return orjson.loads((FIX / name).read_bytes())


def adapter(**kw: Any) -> GeminiAdapter:
    return GeminiAdapter(GeminiSettings(name="gem", type="gemini", api_keys=("k",), **kw))


def chat(stream: bool = False, **body: Any) -> CanonicalRequest:
    b: dict[str, Any] = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], **body}
    return CanonicalRequest(Endpoint.CHAT, "smart", b, stream=stream)


def sent(req: CanonicalRequest, model: str = MODEL) -> dict[str, Any]:
    call = adapter().build(req, Target("gem", model), CREDS)
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
    endpoint = Endpoint.EMBEDDINGS if "input" in case["openai"] else Endpoint.CHAT
    req = CanonicalRequest(endpoint, "smart", case["openai"])
    assert sent(req, case["model"]) == case["gemini"]
    assert case["openai"] == original  # the canonical body is read-only


def test_urls_and_headers() -> None:
    a = adapter()
    call = a.build(chat(), TARGET, CREDS)
    assert call.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert call.headers["x-goog-api-key"] == "AIza-test"
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in call.headers
    stream = a.build(chat(stream=True), TARGET, CREDS)
    assert stream.url.endswith("/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert stream.headers["accept"] == "text/event-stream"
    emb = a.build(CanonicalRequest(Endpoint.EMBEDDINGS, "e", {"input": "x"}), Target("gem", "text-embedding-004"),
                  CREDS)
    assert emb.url == "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents"


def test_configured_version_and_base_url() -> None:
    call = adapter(api_version="v1", base_url="http://127.0.0.1:9/").build(chat(), TARGET, CREDS)
    assert call.url == "http://127.0.0.1:9/v1/models/gemini-2.5-flash:generateContent"
    call = adapter(base_url="http://127.0.0.1:9/v1beta").build(chat(), Target("gem", "tunedModels/my-tune"), CREDS)
    assert call.url == "http://127.0.0.1:9/v1beta/tunedModels/my-tune:generateContent"


def test_registry_and_supported_endpoints() -> None:
    a = create_adapter(GeminiSettings(name="g", type="gemini", api_keys=("k",)))
    assert isinstance(a, GeminiAdapter)
    assert a.supports(Endpoint.CHAT) and a.supports(Endpoint.EMBEDDINGS)
    assert not a.supports(Endpoint.COMPLETIONS)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "a"}}, {"mode": "ANY", "allowedFunctionNames": ["a"]}),
        ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
            {"type": "function", "function": {"name": "b"}}]}}, {"mode": "AUTO", "allowedFunctionNames": ["b"]}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
    body = sent(chat(tools=tools, tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    assert body["tools"] == [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]


@pytest.mark.parametrize(
    ("model", "effort", "config"),
    [
        ("gemini-2.5-pro", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-pro", "high", {"thinkingBudget": 4096, "includeThoughts": True}),
        ("gemini-3-pro-preview", "high", {"thinkingLevel": "high", "includeThoughts": True}),
        ("gemini-3-flash", "minimal", {"thinkingLevel": "low", "includeThoughts": True}),
    ],
)
def test_reasoning_effort(model: str, effort: str, config: dict[str, Any]) -> None:
    assert sent(chat(reasoning_effort=effort), model)["generationConfig"]["thinkingConfig"] == config


def test_single_stop_string_and_no_empty_config() -> None:
    assert sent(chat(stop="END"))["generationConfig"] == {"stopSequences": ["END"]}
    body = sent(chat(n=1, user="u", stream_options={"include_usage": True}, parallel_tool_calls=True))
    assert "generationConfig" not in body and "systemInstruction" not in body and "tools" not in body


def test_empty_text_dropped_and_tool_name_from_message() -> None:
    msgs = [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "x"},
        {"role": "tool", "tool_call_id": "unknown", "name": "lookup", "content": [{"type": "text", "text": "42"}]},
    ]
    response = {"functionResponse": {"name": "lookup", "response": {"content": "42"}}}
    assert sent(chat(messages=msgs))["contents"] == [{"role": "user", "parts": [{"text": "x"}, response]}]


def test_invalid_requests_are_bad_request() -> None:
    bad(messages=[{"role": "tool", "tool_call_id": "nope", "content": "x"}])
    bad(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}])
    bad(messages=[{"role": "user", "content": [{"type": "video", "video": {}}]}])
    bad(messages=[{"role": "function", "content": "x"}])
    bad(messages=[{"role": "system", "content": "only"}])
    bad(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}])
    bad(tools=[{"type": "custom", "custom": {"name": "x"}}])
    bad(response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    bad(reasoning_effort="extreme")
    with pytest.raises(UpstreamError):
        adapter().build(CanonicalRequest(Endpoint.EMBEDDINGS, "e", {"input": [[1, 2, 3]]}), TARGET, CREDS)
    with pytest.raises(UpstreamError):
        adapter().build(CanonicalRequest(Endpoint.COMPLETIONS, "e", {"prompt": "x"}), TARGET, CREDS)


def test_call_ids_carry_signatures() -> None:
    plain = make_call_id()
    assert CALL_ID.match(plain) and signature_of(plain) is None
    signed = make_call_id(SIG)
    assert signed.startswith("call_") and signature_of(signed) == SIG
    assert make_call_id() != make_call_id()


# -- answers ------------------------------------------------------------------------------------


def parse(name: str, model: str = MODEL) -> dict[str, Any]:
    resp = adapter().parse(chat(), Target("gem", model), 200, {}, (FIX / name).read_bytes())
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == resp.body["usage"]["prompt_tokens"]
    assert resp.usage.completion_tokens == resp.body["usage"]["completion_tokens"]
    return resp.body


def test_parse_text() -> None:
    body = parse("response_text.json")
    assert body["object"] == "chat.completion"
    assert body["id"] == "bH6LaZW8Fp_3nsEPqtaSwQ4"
    assert body["model"] == "gemini-2.5-flash"
    assert body["choices"] == [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                "message": {"role": "assistant", "content": TEXT, "refusal": None}}]
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


def test_parse_tool_call_synthesises_ids_with_signature() -> None:
    body = parse("response_tool_call.json", "gemini-3-pro-preview")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert signature_of(call["id"]) == SIG
    assert body["usage"] == {"prompt_tokens": 29, "completion_tokens": 908, "total_tokens": 937,
                             "completion_tokens_details": {"reasoning_tokens": 893}}


def test_tool_call_round_trip_maps_results_back_by_name() -> None:
    """The ids Fluxway invents come back on tool messages and find their function names."""
    first = parse("response_parallel_calls.json")["choices"][0]["message"]
    calls = first["tool_calls"]
    assert [CALL_ID.match(c["id"]) is not None for c in calls] == [True, True]
    assert len({c["id"] for c in calls}) == 2
    msgs = [
        {"role": "user", "content": "weather and time?"},
        first,
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "14:05"},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
    ]
    contents = sent(chat(messages=msgs))["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"text": "Checking both."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_time", "args": {"tz": "Europe/Paris"}}}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_time", "response": {"content": "14:05"}}},
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]}


def test_parse_thinking_and_cached_tokens() -> None:
    body = parse("response_thinking.json")
    msg = body["choices"][0]["message"]
    assert msg["content"] == "27 \u00d7 453 = 12,231."
    assert msg["reasoning_content"] == "**Multiplying**\n\n27 * 453 = 12231."
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 212, "total_tokens": 222,
                             "prompt_tokens_details": {"cached_tokens": 4},
                             "completion_tokens_details": {"reasoning_tokens": 200}}


def test_parse_usage_with_tool_prompt_tokens_and_max_tokens() -> None:
    body = parse("response_usage_tools.json")
    assert body["usage"]["prompt_tokens"] == 77
    assert body["usage"]["completion_tokens"] == 142
    assert body["usage"]["total_tokens"] == 219  # agrees with Gemini's totalTokenCount
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("name", ["response_prompt_blocked.json", "response_safety.json"])
def test_blocked_answers_are_content_filter(name: str) -> None:
    choice = parse(name)["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] is None


def test_parse_snake_case() -> None:
    body = parse("response_snake_case.json")
    msg = body["choices"][0]["message"]
    assert msg["content"] == "Let me look that up."
    assert signature_of(msg["tool_calls"][0]["id"]) == SIG
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["id"] == "snakeCase0000000001"
    assert body["usage"] == {"prompt_tokens": 30, "completion_tokens": 15, "total_tokens": 45,
                             "prompt_tokens_details": {"cached_tokens": 8},
                             "completion_tokens_details": {"reasoning_tokens": 5}}


def test_parse_two_candidates() -> None:
    choices = parse("response_two_candidates.json")["choices"]
    assert [(c["index"], c["message"]["content"]) for c in choices] == [(0, "Heads."), (1, "Tails.")]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
     ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
     ("IMAGE_SAFETY", "content_filter"), ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop")],
)
def test_finish_reason_mapping(reason: str, finish: str) -> None:
    data = fixture("response_text.json")
    data["candidates"][0]["finishReason"] = reason
    resp = adapter().parse(chat(), TARGET, 200, {}, orjson.dumps(data))
    assert resp.body["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"usageMetadata": {}}'])
def test_parse_garbage_is_protocol_error(body: bytes) -> None:
    with pytest.raises(UpstreamError) as exc:
        adapter().parse(chat(), TARGET, 200, {}, body)
    assert exc.value.kind is ErrorKind.PROTOCOL


def test_parse_error_status_raises_classified() -> None:
    with pytest.raises(UpstreamError) as exc:
        adapter().parse(chat(), TARGET, 503, {}, (FIX / "error_unavailable.json").read_bytes())
    assert exc.value.kind is ErrorKind.OVERLOADED


# -- embeddings ---------------------------------------------------------------------------------


def embed(encoding: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "embed", "input": ["first text", "second text!"]}
    if encoding:
        body["encoding_format"] = encoding
    req = CanonicalRequest(Endpoint.EMBEDDINGS, "embed", body)
    resp = adapter().parse(req, Target("gem", "gemini-embedding-001"), 200, {},
                           (FIX / "embeddings_response.json").read_bytes())
    assert resp.usage is not None and resp.usage.estimated
    assert resp.usage.prompt_tokens == resp.body["usage"]["prompt_tokens"] == 5  # o200k: 2 + 3
    return resp.body


def test_embeddings_as_floats() -> None:
    body = embed(None)
    assert body["object"] == "list"
    assert body["model"] == "gemini-embedding-001"
    assert body["data"] == [
        {"object": "embedding", "index": 0, "embedding": [0.0125, -0.5, 0.25, 1.0]},
        {"object": "embedding", "index": 1, "embedding": [-0.75, 0.5, 0.0, 0.125]},
    ]


def test_embeddings_as_base64_float32() -> None:
    """The openai SDK asks for base64 by default and decodes little-endian float32."""
    data = embed("base64")["data"]
    decoded = [list(struct.unpack("<4f", base64.b64decode(d["embedding"]))) for d in data]
    assert decoded == [[0.012500000186264515, -0.5, 0.25, 1.0], [-0.75, 0.5, 0.0, 0.125]]


# -- streams ------------------------------------------------------------------------------------


def normalise(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    """Drop what differs between two decodings of the same bytes: the clock and invented ids."""
    out = []
    for c in chunks:
        data = orjson.loads(orjson.dumps(c.data))
        data["created"] = 0
        for choice in data["choices"]:
            for call in choice["delta"].get("tool_calls", []):
                call["id"] = "call_" + (signature_of(call["id"]) or "")
        out.append(data)
    return out


def decode(data: bytes, cuts: list[int] | None = None) -> list[dict[str, Any]]:
    dec = GeminiStreamDecoder(MODEL)
    chunks: list[StreamChunk] = []
    start = 0
    for cut in [*(cuts or []), len(data)]:
        chunks.extend(dec.feed(data[start:cut]))
        start = cut
    chunks.extend(dec.close())
    return normalise(chunks)


def deltas(chunks: list[dict[str, Any]], key: str, index: int = 0) -> str:
    return "".join(c["choices"][0]["delta"].get(key) or "" for c in chunks
                   if c["choices"] and c["choices"][0]["index"] == index)


def finishes(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]


def test_stream_text() -> None:
    chunks = decode((FIX / "stream_text.sse").read_bytes())
    assert all(c["id"] == "streamText0000000001" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert deltas(chunks, "content") == TEXT
    assert finishes(chunks) == ["stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}


@pytest.mark.parametrize("name", ["stream_text.sse", "stream_tool_call.sse", "stream_thinking.sse"])
def test_stream_split_at_every_byte_boundary(name: str) -> None:
    data = (FIX / name).read_bytes()
    whole = decode(data)
    for i in range(1, len(data)):
        assert decode(data, [i]) == whole, f"split at byte {i}"
    assert decode(data, list(range(1, len(data)))) == whole


def test_stream_tool_calls() -> None:
    chunks = decode((FIX / "stream_tool_call.sse").read_bytes())
    assert deltas(chunks, "content") == "Checking."
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls == [
        {"index": 0, "id": "call_" + SIG, "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"index": 1, "id": "call_", "type": "function",
         "function": {"name": "get_time", "arguments": '{"tz":"Europe/Paris"}'}},
    ]
    assert finishes(chunks) == ["tool_calls"]
    assert chunks[-1]["usage"]["total_tokens"] == 62


def test_stream_thinking() -> None:
    chunks = decode((FIX / "stream_thinking.sse").read_bytes())
    assert deltas(chunks, "reasoning_content") == "Multiplying 27 by 453."
    assert deltas(chunks, "content") == "27 \u00d7 453 = 12,231."
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 200}


def test_stream_prompt_blocked() -> None:
    chunks = decode((FIX / "stream_prompt_blocked.sse").read_bytes())
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert finishes(chunks) == ["content_filter"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 9


def test_stream_two_candidates() -> None:
    two = fixture("response_two_candidates.json")
    chunks = decode(b"data: " + orjson.dumps(two) + b"\n\n")
    assert deltas(chunks, "content", 0) == "Heads."
    assert deltas(chunks, "content", 1) == "Tails."
    assert finishes(chunks) == ["stop", "stop"]


def test_stream_snake_case() -> None:
    chunks = decode(b"data: " + (FIX / "response_snake_case.json").read_bytes().replace(b"\n", b"") + b"\n\n")
    assert deltas(chunks, "content") == "Let me look that up."
    assert finishes(chunks) == ["tool_calls"]
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 8}


def test_stream_cut_short_is_protocol_error() -> None:
    dec = GeminiStreamDecoder(MODEL)
    assert deltas(normalise(dec.feed((FIX / "stream_truncated.sse").read_bytes())), "content") == "Hello"
    with pytest.raises(UpstreamError) as exc:
        dec.close()
    assert exc.value.kind is ErrorKind.PROTOCOL


def test_stream_error_event_is_classified() -> None:
    with pytest.raises(UpstreamError) as exc:
        GeminiStreamDecoder(MODEL).feed((FIX / "stream_error.sse").read_bytes())
    assert exc.value.kind is ErrorKind.OVERLOADED


def test_stream_plain_json_error_body_is_classified() -> None:
    data = (FIX / "stream_plain_json_error.txt").read_bytes()
    dec = GeminiStreamDecoder(MODEL)
    for i in range(0, len(data), 7):
        assert dec.feed(data[i : i + 7]) == []
    with pytest.raises(UpstreamError) as exc:
        dec.close()
    assert exc.value.kind is ErrorKind.RATE_LIMITED


def test_stream_malformed_event() -> None:
    with pytest.raises(UpstreamError) as exc:
        GeminiStreamDecoder(MODEL).feed(b"data: {nope\n\n")
    assert exc.value.kind is ErrorKind.PROTOCOL


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("error_invalid_argument.json", ErrorKind.BAD_REQUEST),
        ("error_api_key_invalid.json", ErrorKind.AUTH),
        ("error_permission_denied.json", ErrorKind.AUTH),
        ("error_failed_precondition.json", ErrorKind.AUTH),
        ("error_not_found.json", ErrorKind.NOT_FOUND),
        ("error_context_length.json", ErrorKind.CONTEXT_LENGTH),
        ("error_resource_exhausted.json", ErrorKind.RATE_LIMITED),
        ("error_internal.json", ErrorKind.UPSTREAM_5XX),
        ("error_unavailable.json", ErrorKind.OVERLOADED),
        ("error_deadline_exceeded.json", ErrorKind.TIMEOUT),
    ],
)
def test_error_classification(name: str, kind: ErrorKind) -> None:
    data = fixture(name)
    status = data["error"]["code"]
    err = adapter().classify_error(status, {}, (FIX / name).read_bytes())
    assert err.kind is kind
    assert err.status == status
    assert err.message == data["error"]["message"]
    assert err.body == data


def test_retry_after_from_header_or_retry_info() -> None:
    body = (FIX / "error_resource_exhausted.json").read_bytes()
    assert adapter().classify_error(429, {}, body).retry_after == 34.0
    assert adapter().classify_error(429, {"retry-after": "3"}, body).retry_after == 3.0
    assert adapter().classify_error(429, {}, b'{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}').retry_after \
        is None


def test_error_without_json_body() -> None:
    err = adapter().classify_error(502, {}, b"<html>502 Bad Gateway</html>")
    assert err.kind is ErrorKind.UPSTREAM_5XX
    assert "Bad Gateway" in err.message


# -- nothing but UpstreamError escapes, whatever the input ----------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _shaped(keys: list[str], kinds: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"type": st.sampled_from(kinds)}, optional={k: _json for k in keys})


_part = _shaped(["text", "image_url", "input_audio", "file"], ["text", "image_url", "input_audio", "file", "x"])
_call = st.fixed_dictionaries({}, optional={"id": _json, "function": st.fixed_dictionaries(
    {}, optional={"name": _json, "arguments": _json | st.just('{"a": 1}')})})
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "x"])},
    optional={"content": _json | st.lists(_part, max_size=3), "tool_calls": _json | st.lists(_call, max_size=2),
              "tool_call_id": _json, "name": _json},
)
_body = st.fixed_dictionaries(
    {"messages": st.lists(_message, max_size=4) | _json},
    optional={k: _json for k in ("tools", "tool_choice", "response_format", "max_tokens", "stop", "temperature",
                                 "n", "reasoning_effort", "seed", "input", "dimensions", "encoding_format")},
)


@settings(max_examples=60, deadline=None)
@given(body=_body, embeddings=st.booleans(), model=st.sampled_from([MODEL, "gemini-3-pro-preview"]))
def test_build_never_raises_anything_else(body: dict[str, Any], embeddings: bool, model: str) -> None:
    req = CanonicalRequest(Endpoint.EMBEDDINGS if embeddings else Endpoint.CHAT, "m", body)
    try:
        call = adapter().build(req, Target("gem", model), CREDS)
    except UpstreamError as err:
        assert err.kind is ErrorKind.BAD_REQUEST
    else:
        assert isinstance(orjson.loads(call.body or b""), dict)


_gpart = st.fixed_dictionaries({}, optional={k: _json for k in (
    "text", "thought", "functionCall", "function_call", "thoughtSignature")})
_candidate = st.fixed_dictionaries({}, optional={
    "content": st.fixed_dictionaries({}, optional={"parts": st.lists(_gpart, max_size=3) | _json}) | _json,
    "finishReason": _json, "index": _json})
_answer = st.fixed_dictionaries({}, optional={
    "candidates": st.lists(_candidate, max_size=2) | _json, "usageMetadata": _json, "promptFeedback": _json,
    "embeddings": _json, "responseId": _json, "modelVersion": _json})


@settings(max_examples=60, deadline=None)
@given(answer=_answer, embeddings=st.booleans(), encoding=st.sampled_from(["float", "base64"]))
def test_parse_never_raises_anything_else(answer: dict[str, Any], embeddings: bool, encoding: str) -> None:
    body = {"input": ["a"], "encoding_format": encoding}
    req = CanonicalRequest(Endpoint.EMBEDDINGS, "e", body) if embeddings else chat()
    with contextlib.suppress(UpstreamError):
        adapter().parse(req, TARGET, 200, {}, orjson.dumps(answer))


@settings(max_examples=60, deadline=None)
@given(events=st.lists(_answer, max_size=4), junk=st.binary(max_size=40))
def test_stream_decoder_never_raises_anything_else(events: list[dict[str, Any]], junk: bytes) -> None:
    data = b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events) + junk
    dec = GeminiStreamDecoder(MODEL)
    with contextlib.suppress(UpstreamError):
        dec.feed(data)
        dec.close()
