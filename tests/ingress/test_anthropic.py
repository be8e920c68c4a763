"""The Anthropic Messages ingress: request, response, stream and error mappings (pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message

from fluxway.canonical import CanonicalRequest, CanonicalResponse, Endpoint, StreamChunk, Usage
from fluxway.errors import GatewayError, overloaded, rate_limited
from fluxway.errors import anthropic_error_type as error_type
from fluxway.ingress.anthropic import AnthropicIngress
from fluxway.ingress.anthropic_request import effort_for_budget
from fluxway.sse import SSEDecoder

ING = AnthropicIngress()


def parse(**fields: Any) -> CanonicalRequest:
    body = {"model": "smart", "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}], **fields}
    body = {k: v for k, v in body.items() if v is not ...}
    return ING.parse(Endpoint.CHAT, orjson.dumps(body))


def bad(**fields: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse(**fields)
    assert info.value.status == 400
    return info.value


def user(*blocks: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


# -- keys ----------------------------------------------------------------------------------------


def test_api_key_from_x_api_key_or_bearer() -> None:
    assert ING.api_key({"x-api-key": "sk-a", "anthropic-version": "2023-06-01"}) == "sk-a"
    assert ING.api_key({"authorization": "Bearer sk-b", "anthropic-version": "2026-10-21"}) == "sk-b"
    assert ING.api_key({"x-api-key": "sk-a", "authorization": "Bearer sk-b"}) == "sk-a"
    assert ING.api_key({"x-api-key": "  "}) is None
    assert ING.api_key({}) is None


# -- requests ------------------------------------------------------------------------------------


def test_minimal_request() -> None:
    req = parse()
    assert (req.endpoint, req.model, req.stream, req.include_usage) == (Endpoint.CHAT, "smart", False, True)
    assert req.body == {"model": "smart", "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}]}


def test_stream_asks_for_usage() -> None:
    req = parse(stream=True)
    assert req.stream and req.include_usage
    assert req.body["stream"] is True
    assert req.body["stream_options"] == {"include_usage": True}


def test_system_string_and_blocks() -> None:
    assert parse(system="be brief").body["messages"][0] == {"role": "system", "content": "be brief"}
    blocks = [{"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "two"}]
    assert parse(system=blocks).body["messages"][0] == {"role": "system", "content": "one\n\ntwo"}
    assert parse(system="").body["messages"][0]["role"] == "user"
    err = bad(system=[{"type": "image", "source": {}}])
    assert err.param == "system.0.type"


def test_mid_conversation_system_message() -> None:
    msgs = [{"role": "user", "content": "a"}, {"role": "system", "content": [{"type": "text", "text": "note"}]}]
    assert parse(messages=msgs).body["messages"][1] == {"role": "system", "content": "note"}


def test_text_blocks_and_images() -> None:
    req = parse(
        messages=user(
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
        )
    )
    assert req.body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
            ],
        }
    ]
    # a single text block collapses to a string
    assert parse(messages=user({"type": "text", "text": "x"})).body["messages"] == [{"role": "user", "content": "x"}]


def test_documents() -> None:
    pdf = {
        "type": "document",
        "title": "r.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    txt = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}}
    parts = parse(messages=user(pdf, txt)).body["messages"][0]["content"]
    assert parts == [
        {"type": "file", "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
        {"type": "text", "text": "plain"},
    ]
    err = bad(messages=user({"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}}))
    assert err.param == "messages.0.content.0.source.type"


def test_tool_use_and_tool_results() -> None:
    msgs = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "timeout"},
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/e.png"}},
                    ],
                },
                {"type": "text", "text": "and?"},
            ],
        },
    ]
    out = parse(messages=msgs).body["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
        ],
    }
    assert out[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}
    assert out[3] == {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: timeout"}
    assert out[4] == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": "https://x.test/e.png"}},
            {"type": "text", "text": "and?"},
        ],
    }
    assert len(out) == 5


def test_assistant_tool_use_only_has_null_content() -> None:
    msgs = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
    ]
    out = parse(messages=msgs).body["messages"]
    assert out[1]["content"] is None and out[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert out[2] == {"role": "tool", "tool_call_id": "t", "content": ""}


def test_thinking_blocks_dropped_unless_thinking_is_on() -> None:
    think = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    msgs = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [think, {"type": "text", "text": "a"}]},
        {"role": "user", "content": "q2"},
    ]
    assert parse(messages=msgs).body["messages"][1] == {"role": "assistant", "content": "a"}
    on = parse(messages=msgs, max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024})
    assert on.body["messages"][1] == {"role": "assistant", "content": "a", "thinking_blocks": [think]}


def test_final_empty_assistant_is_dropped_but_other_empty_messages_rejected() -> None:
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]
    assert parse(messages=msgs).body["messages"] == [{"role": "user", "content": "q"}]
    err = bad(messages=[{"role": "user", "content": []}, {"role": "assistant", "content": "x"}])
    assert err.param == "messages.0" and "non-empty content" in err.message


def test_sampling_and_metadata() -> None:
    body = parse(temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["END", "STOP"], metadata={"user_id": "u1"}).body
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9 and body["top_k"] == 40
    assert body["stop"] == ["END", "STOP"]
    assert body["user"] == "u1"
    assert "stop" not in parse(stop_sequences=[]).body


TOOL = {"name": "weather", "description": "Get weather", "input_schema": {"type": "object", "properties": {}}}


def test_tools_and_tool_choice() -> None:
    body = parse(tools=[TOOL, {**TOOL, "name": "w2", "type": "custom"}]).body
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "weather", "description": "Get weather", "parameters": TOOL["input_schema"]},
    }
    assert "tool_choice" not in body
    cases = [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "weather"}, {"type": "function", "function": {"name": "weather"}}),
    ]
    for choice, expected in cases:
        assert parse(tools=[TOOL], tool_choice=choice).body["tool_choice"] == expected
    body = parse(tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": True}).body
    assert body["parallel_tool_calls"] is False
    assert "parallel_tool_calls" not in parse(tools=[TOOL], tool_choice={"type": "auto"}).body
    # without tools, OpenAI would refuse tool_choice: it is dropped
    assert "tool_choice" not in parse(tool_choice={"type": "any"}).body


def test_tool_errors() -> None:
    assert bad(tools=[{"name": "x"}]).param == "tools.0.input_schema"
    assert bad(tools=[{"type": "web_search_20250305", "name": "web_search"}]).param == "tools.0.type"
    assert bad(tools=[TOOL], tool_choice={"type": "sometimes"}).param == "tool_choice.type"
    assert bad(tools=[TOOL], tool_choice={"type": "tool"}).param == "tool_choice.name"
    assert bad(tools="x").param == "tools"


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (4000, "medium"), (16000, "high")])
def test_thinking_budget_to_reasoning_effort(budget: int, effort: str) -> None:
    thinking = {"type": "enabled", "budget_tokens": budget}
    body = parse(max_tokens=32000, thinking=thinking).body
    assert body["reasoning_effort"] == effort
    assert body["thinking"] == thinking
    assert effort_for_budget(budget) == effort


def test_thinking_variants_and_errors() -> None:
    assert "thinking" not in parse(thinking={"type": "disabled"}).body
    assert parse(thinking={"type": "adaptive"}).body["thinking"] == {"type": "adaptive"}
    assert bad(thinking={"type": "enabled", "budget_tokens": 500}).param == "thinking.enabled.budget_tokens"
    assert bad(thinking={"type": "enabled", "budget_tokens": 2000}).param == "max_tokens"  # max_tokens 256
    assert bad(thinking={"type": "enabled"}).param == "thinking.enabled.budget_tokens"
    assert bad(thinking={"type": "wild"}).param == "thinking.type"


def test_output_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = parse(output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "high"}).body
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert body["reasoning_effort"] == "high"
    assert bad(output_config={"format": {"type": "json_schema"}}).param == "output_config.format.schema"
    assert bad(output_config={"effort": "huge"}).param == "output_config.effort"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ...}, "model"),
        ({"model": 3}, "model"),
        ({"max_tokens": ...}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": ...}, "messages"),
        ({"messages": {}}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages.0"),
        ({"messages": [{"content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": user({"text": "x"})}, "messages.0.content.0.type"),
        ({"messages": user({"type": "text"})}, "messages.0.content.0.text"),
        ({"messages": user({"type": "text", "text": 1})}, "messages.0.content.0.text"),
        ({"messages": user({"type": "image"})}, "messages.0.content.0.source"),
        (
            {"messages": user({"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}})},
            "messages.0.content.0.source.media_type",
        ),
        ({"messages": user({"type": "tool_use", "id": "a", "name": "b", "input": {}})}, "messages.0.content.0.type"),
        ({"messages": user({"type": "tool_result"})}, "messages.0.content.0.tool_use_id"),
        ({"messages": user({"type": "mystery"})}, "messages.0.content.0.type"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "tool_use"}]}]},
            "messages.1.content.0.id",
        ),
        ({"stream": "yes"}, "stream"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_k": 1.5}, "top_k"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"stop_sequences": [1]}, "stop_sequences.0"),
        ({"metadata": {"user_id": 7}}, "metadata.user_id"),
    ],
)
def test_validation_names_the_field(fields: dict[str, Any], param: str) -> None:
    err = bad(**fields)
    assert err.param == param
    assert err.message.startswith(param + ":")


def test_malformed_bodies() -> None:
    for body in (b"{not json", b"", b"[1, 2]", b'"x"'):
        with pytest.raises(GatewayError) as info:
            ING.parse(Endpoint.CHAT, body)
        assert info.value.status == 400 and info.value.code == "invalid_json"
    with pytest.raises(GatewayError) as info:
        ING.parse(Endpoint.EMBEDDINGS, b"{}")
    assert info.value.status == 404


# -- responses -----------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **extra}
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "model": "gpt-4o-2024",
        "choices": [choice],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 30},
        },
    }


def render(body: dict[str, Any], req: CanonicalRequest | None = None) -> dict[str, Any]:
    req = req or parse()
    out = orjson.loads(ING.render(req, CanonicalResponse(body, Usage.from_openai(body.get("usage")))))
    Message.model_validate(out)  # the official SDK accepts it
    return out


def test_render_text() -> None:
    out = render(completion({"content": "Hello!"}))
    assert out == {
        "id": "msg_abc123",
        "type": "message",
        "role": "assistant",
        "model": "smart",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 70,
            "output_tokens": 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 30,
        },
    }


def test_render_tool_calls() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": ""}},
        {"id": "call_3", "type": "function", "function": {"name": "bad", "arguments": "{oops"}},
    ]
    out = render(completion({"content": "Let me check.", "tool_calls": calls}, "tool_calls"))
    assert out["stop_reason"] == "tool_use"
    assert out["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "noop", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "bad", "input": {"_raw_arguments": "{oops"}},
    ]
    # some servers say "stop" although they called tools
    assert render(completion({"content": None, "tool_calls": calls[:1]}, "stop"))["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("stop", "end_turn"),
        (None, "end_turn"),
        ("odd", "end_turn"),
    ],
)
def test_render_stop_reasons(finish: str | None, reason: str) -> None:
    assert render(completion({"content": "x"}, finish))["stop_reason"] == reason


def test_render_stop_sequence_when_the_upstream_names_it() -> None:
    req = parse(stop_sequences=["END"])
    out = render(completion({"content": "x"}, "stop", stop_reason="END"), req)
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")
    # a stop_reason that is not one of ours (vLLM token ids) is a plain end_turn
    out = render(completion({"content": "x"}, "stop", stop_reason=128001), req)
    assert (out["stop_reason"], out["stop_sequence"]) == ("end_turn", None)


def test_render_reasoning_as_thinking() -> None:
    out = render(completion({"content": "42", "reasoning_content": "think"}))
    assert out["content"] == [
        {"type": "thinking", "thinking": "think", "signature": ""},
        {"type": "text", "text": "42"},
    ]
    signed = [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "redacted_thinking", "data": "d"}]
    out = render(completion({"content": "42", "reasoning_content": "t", "thinking_blocks": signed}))
    assert out["content"] == [*signed, {"type": "text", "text": "42"}]


def test_render_usage_details_and_odd_bodies() -> None:
    body = completion({"content": "x"})
    body["usage"] = {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    usage = render(body)["usage"]
    assert usage == {
        "input_tokens": 50,
        "output_tokens": 50,
        "cache_creation_input_tokens": 40,
        "cache_read_input_tokens": 10,
        "output_tokens_details": {"thinking_tokens": 30},
    }
    out = render({"choices": []})
    assert out["content"] == [] and out["id"].startswith("msg_") and out["usage"]["input_tokens"] == 0


# -- streams -------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> StreamChunk:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, **extra}]
    return StreamChunk({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "choices": choices})


def usage_chunk(prompt: int, completion: int) -> StreamChunk:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return StreamChunk({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "choices": [], "usage": usage})


def run_stream(chunks: list[StreamChunk], usage: Usage | None = None, req: CanonicalRequest | None = None) -> bytes:
    enc = ING.stream_encoder(req or parse(stream=True), "req1")
    return b"".join(enc.chunk(c) for c in chunks) + enc.finish(usage)


def events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    dec = SSEDecoder()
    out = [(e.event, orjson.loads(e.data)) for e in dec.feed(raw) + dec.flush()]
    for name, data in out:
        assert data["type"] == name  # the event name always repeats the payload type
    return out


def final_message(raw: bytes) -> Message:
    """What the official SDK's stream accumulator builds from these events."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for _, data in events(raw):
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    return snapshot


def test_stream_text() -> None:
    raw = run_stream(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            usage_chunk(12, 3),
        ]
    )
    evs = events(raw)
    assert [n for n, _ in evs] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = evs[0][1]["message"]
    assert start["id"] == "msg_s1" and start["model"] == "smart" and start["content"] == []
    assert start["usage"]["input_tokens"] > 0 and start["usage"]["output_tokens"] == 0  # counted
    assert evs[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert evs[2][1]["delta"] == {"type": "text_delta", "text": "Hel"}
    assert evs[4][1] == {"type": "content_block_stop", "index": 0}
    assert evs[5][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert evs[5][1]["usage"]["output_tokens"] == 3 and evs[5][1]["usage"]["input_tokens"] == 12
    msg = final_message(raw)
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello"
    assert msg.usage.input_tokens == 12 and msg.usage.output_tokens == 3 and msg.stop_reason == "end_turn"


def test_stream_tool_calls_open_one_block_each() -> None:
    def tc(index: int, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
        call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
        if call_id:
            call["id"], call["type"], call["function"]["name"] = call_id, "function", name
        return {"tool_calls": [call]}

    raw = run_stream(
        [
            chunk({"role": "assistant", "content": "Checking."}),
            chunk(tc(0, "", "call_a", "weather")),
            chunk(tc(0, '{"city":')),
            chunk(tc(0, '"Paris"}')),
            chunk(tc(1, '{"city":"Rome"}', "call_b", "weather")),
            chunk({}, "tool_calls"),
            usage_chunk(50, 30),
        ]
    )
    evs = events(raw)
    starts = [d for n, d in evs if n == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [(0, "text"), (1, "tool_use"), (2, "tool_use")]
    assert starts[1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}
    deltas = [(d["index"], d["delta"]) for n, d in evs if n == "content_block_delta"]
    assert deltas[0] == (0, {"type": "text_delta", "text": "Checking."})
    json_deltas = [(i, d["partial_json"]) for i, d in deltas if d["type"] == "input_json_delta"]
    assert json_deltas == [(1, '{"city":'), (1, '"Paris"}'), (2, '{"city":"Rome"}')]
    assert [d["index"] for n, d in evs if n == "content_block_stop"] == [0, 1, 2]
    # each block is stopped before the next one starts
    order = [(n, d.get("index")) for n, d in evs if n.startswith("content_block_") and n != "content_block_delta"]
    assert order == [
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_stop", 2),
    ]
    msg = final_message(raw)
    assert msg.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "input", None)) for b in msg.content] == [
        ("text", None),
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {"city": "Rome"}),
    ]


def test_stream_tool_call_fragments_without_index() -> None:
    raw = run_stream(
        [
            chunk({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}),
            chunk({"tool_calls": [{"function": {"arguments": ":1}"}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    msg = final_message(raw)
    assert len(msg.content) == 1 and msg.content[0].type == "tool_use" and msg.content[0].input == {"a": 1}


def test_stream_reasoning_then_text() -> None:
    raw = run_stream(
        [
            chunk({"reasoning_content": "hm"}),
            chunk({"reasoning_content": "m"}),
            chunk({"content": "ok"}),
            chunk({}, "stop"),
        ]
    )
    evs = events(raw)
    assert evs[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert evs[2][1]["delta"] == {"type": "thinking_delta", "thinking": "hm"}
    msg = final_message(raw)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "hmm"  # type: ignore[union-attr]


def test_stream_usage_from_finish_wins_and_cached_tokens() -> None:
    raw = run_stream(
        [chunk({"content": "x"}, "length")], Usage(prompt_tokens=40, completion_tokens=9, cached_tokens=15)
    )
    delta = next(d for n, d in events(raw) if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"] == {
        "input_tokens": 25,
        "output_tokens": 9,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 15,
    }


def test_stream_stop_sequence() -> None:
    req = parse(stream=True, stop_sequences=["###"])
    raw = run_stream([chunk({"content": "x"}), chunk({}, "stop", stop_reason="###")], req=req)
    delta = next(d for n, d in events(raw) if n == "message_delta")
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "###"}


def test_stream_without_chunks_still_is_a_whole_message() -> None:
    names = [n for n, _ in events(run_stream([]))]
    assert names == ["message_start", "message_delta", "message_stop"]
    assert final_message(run_stream([])).id == "msg_req1"


def test_stream_error_event() -> None:
    enc = ING.stream_encoder(parse(stream=True), "r")
    head = enc.chunk(chunk({"content": "par"}))
    tail = enc.error(GatewayError(502, "upstream died", type="upstream_error"))
    evs = events(head + tail)
    assert evs[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "upstream died"}})


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        (599, "api_error"),
    ],
)
def test_error_types(status: int, kind: str) -> None:
    err = GatewayError(status, "boom")
    assert error_type(err) == kind
    assert orjson.loads(ING.render_error(err)) == {"type": "error", "error": {"type": kind, "message": "boom"}}


def test_render_error_for_helpers() -> None:
    assert orjson.loads(ING.render_error(rate_limited("slow down", 2.0)))["error"]["type"] == "rate_limit_error"
    assert orjson.loads(ING.render_error(overloaded()))["error"]["type"] == "overloaded_error"


SIGNED = [{"type": "thinking", "thinking": "ab", "signature": "SIG"}, {"type": "redacted_thinking", "data": "Zm9v"}]


@pytest.mark.parametrize("streamed_text", [True, False])
def test_stream_signed_thinking(streamed_text: bool) -> None:
    """The signature goes out as a signature_delta just before its block's stop (after the streamed
    text, or with the text when none streamed, as from a cached answer); a redacted block is its own."""
    text = [chunk({"reasoning_content": "a"}), chunk({"reasoning_content": "b"})] if streamed_text else []
    raw = run_stream([chunk({"role": "assistant", "content": ""}), *text,
                      chunk({"thinking_blocks": [{**SIGNED[0], "index": 0}]}),
                      chunk({"thinking_blocks": [{**SIGNED[1], "index": 1}]}),
                      chunk({"content": "4"}), chunk({}, "stop")], Usage(3, 2))
    evs = [data for _, data in events(raw)]
    [sig] = [e for e in evs if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"]
    assert sig["delta"]["signature"] == "SIG"
    assert evs[evs.index(sig) + 1] == {"type": "content_block_stop", "index": 0}
    message = final_message(raw)
    assert [b.model_dump() for b in message.content[:2]] == SIGNED
    assert message.content[2].type == "text"


def test_stream_unsigned_reasoning_has_no_signature_delta() -> None:
    raw = run_stream([chunk({"reasoning_content": "hm"}), chunk({"content": "x"}), chunk({}, "stop")])
    assert b"signature_delta" not in raw
