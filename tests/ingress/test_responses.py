"""The Responses ingress, pure: request translation and the event emitter (validated against
OpenAI's published schemas)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from fluxway.canonical import CanonicalResponse, StreamChunk, Usage
from fluxway.errors import GatewayError
from fluxway.ingress.responses_object import build_response, output_items
from fluxway.ingress.responses_request import items_to_messages, parse_responses_request, with_history
from fluxway.ingress.responses_stream import ResponsesStreamEncoder
from fluxway.thinking import blocks_from_encrypted, encrypted_content
from tests.support.responses_schema import check_events, check_item_list, check_response


def _parse(**body: Any) -> Any:
    return parse_responses_request(orjson.dumps({"model": "m", **body}))


def test_fields_map_to_the_chat_request() -> None:
    call = _parse(
        input="hi", instructions="sys", max_output_tokens=64, temperature=0.5, top_p=0.9, user="u1",
        reasoning={"effort": "low"}, text={"format": {"type": "json_object"}}, parallel_tool_calls=False,
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        tool_choice={"type": "function", "name": "f"}, metadata={"a": "b"}, store=False, stream=True,
    )
    body = call.request.body
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert body["max_completion_tokens"] == 64 and body["temperature"] == 0.5 and body["top_p"] == 0.9
    assert body["reasoning_effort"] == "low" and body["response_format"] == {"type": "json_object"}
    assert body["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["parallel_tool_calls"] is False and body["user"] == "u1"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "metadata" not in body and "store" not in body
    assert call.request.stream and call.store is False
    assert call.echo["metadata"] == {"a": "b"} and call.echo["reasoning"] == {"effort": "low", "summary": None}


def test_tool_choice_without_tools_is_not_sent() -> None:
    assert "tool_choice" not in _parse(input="x", tool_choice="none").request.body


def test_items_to_messages_joins_calls_to_their_assistant_turn() -> None:
    call = _parse(input=[
        {"role": "user", "content": "q"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
    ])
    assert call.request.body["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert all(item.get("id") for item in call.input)


def test_input_items_are_kept_in_the_item_schema() -> None:
    call = _parse(input=[
        {"role": "user", "content": [{"type": "text", "text": "q"},
                                     {"type": "input_image", "image_url": "https://example.com/a.png"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
        {"role": "assistant", "content": "b"},
        {"type": "reasoning", "summary": None},
        {"type": "function_call_output", "call_id": "c", "output": [{"type": "text", "text": "o"}]},
    ])
    page = {"object": "list", "data": call.input, "first_id": call.input[0]["id"], "last_id": call.input[-1]["id"],
            "has_more": False}
    check_item_list(page)
    assert call.input[0]["content"] == [{"type": "input_text", "text": "q"},
                                        {"type": "input_image", "image_url": "https://example.com/a.png",
                                         "detail": "auto"}]
    assert [i["content"] for i in call.input[1:3]] == [
        [{"type": "output_text", "text": t, "annotations": [], "logprobs": []}] for t in "ab"]
    assert call.input[3]["id"].startswith("rs_") and call.input[3]["summary"] == []
    assert call.input[4]["output"] == [{"type": "input_text", "text": "o"}]
    assert call.echo.get("user", "absent") == "absent"  # a string or absent in the schema, never null


def test_history_goes_after_instructions_and_before_this_turn() -> None:
    call = _parse(input="now", instructions="sys")
    with_history(call, [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "before"}]}])
    assert [m["content"] for m in call.request.body["messages"]] == ["sys", "before", "now"]
    assert items_to_messages([{"type": "message", "role": "assistant", "content": [
        {"type": "refusal", "refusal": "no"}]}]) == [{"role": "assistant", "content": "no"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 3}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"type": "message", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": 1}]}, "input[0].output"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input[0].content[0].image_url"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
         "input[0].content[0].file_id"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": "x", "tool_choice": "sometimes"}, "tool_choice"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "metadata": {"k": 1}}, "metadata.k"),
        ({"input": "x", "previous_response_id": ""}, "previous_response_id"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        # echoed into the Response object, so held to the values its schema allows
        ({"input": "x", "truncation": "sometimes"}, "truncation"),
        ({"input": "x", "service_tier": "gold"}, "service_tier"),
        ({"input": "x", "max_tool_calls": "many"}, "max_tool_calls"),
        ({"input": "x", "text": {"verbosity": "loud"}}, "text.verbosity"),
        ({"input": "x", "reasoning": {"summary": "long"}}, "reasoning.summary"),
        ({"input": [{"role": "user", "content": "x", "status": "done"}]}, "input[0].status"),
    ],
)
def test_bad_fields_are_named(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        _parse(**body)
    assert info.value.status == 400 and info.value.param == param


def test_missing_model_and_bad_json() -> None:
    with pytest.raises(GatewayError) as info:
        parse_responses_request(b'{"input": "x"}')
    assert info.value.param == "model"
    with pytest.raises(GatewayError) as info:
        parse_responses_request(b"{")
    assert info.value.code == "invalid_json"


def _completion(message: dict[str, Any], finish: str = "stop") -> CanonicalResponse:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}
    return CanonicalResponse(body, Usage(10, 4, cached_tokens=3, reasoning_tokens=1))


def test_response_object_matches_the_schema() -> None:
    call = _parse(input="x", max_output_tokens=4)
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    output, finish = output_items(_completion({"content": "partial", "tool_calls": calls}, "length"))
    resp = build_response(call, "resp_1", 1, output, "incomplete", incomplete_details={"reason": "max_output_tokens"})
    check_response(resp)
    assert resp["completed_at"] is None and "usage" not in resp  # completed_at only once completed; no usage: null
    assert finish == "length" and [o["type"] for o in output] == ["message", "function_call"]
    assert output[1]["call_id"] == "c1" and output[0]["content"][0]["annotations"] == []
    refusal, _ = output_items(_completion({"content": None, "refusal": "I can't."}))
    assert refusal[0]["content"] == [{"type": "refusal", "refusal": "I can't."}]
    check_response(build_response(call, "resp_2", 1, refusal, "completed"))


def _frames(data: bytes) -> list[dict[str, Any]]:
    events = []
    for frame in data.decode().split("\n\n"):
        if frame.strip():
            lines = dict(line.split(": ", 1) for line in frame.splitlines())
            events.append(json.loads(lines["data"]))
    return events


def _chunk(delta: dict[str, Any], finish: str | None = None) -> StreamChunk:
    return StreamChunk({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_stream_of_text_then_parallel_tool_calls() -> None:
    finals: list[dict[str, Any]] = []
    enc = ResponsesStreamEncoder(_parse(input="x", stream=True), "resp_s", 1, finals.append)
    out = enc.chunk(_chunk({"role": "assistant", "content": "Checking"}))
    out += enc.chunk(_chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}))
    out += enc.chunk(_chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}))
    out += enc.chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}))
    out += enc.chunk(_chunk({}, "tool_calls"))
    out += enc.finish(Usage(5, 2))
    events = _frames(out)
    check_events(events)
    [final] = finals
    assert events[-1]["response"] == final
    assert [(o["type"], o.get("arguments")) for o in final["output"]] == [
        ("message", None), ("function_call", "{}"), ("function_call", "{}")]
    assert final["output"][0]["content"][0]["text"] == "Checking"
    assert final["usage"]["total_tokens"] == 7
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1


def test_stream_cut_by_length_is_incomplete_and_a_failure_is_failed() -> None:
    finals: list[dict[str, Any]] = []
    enc = ResponsesStreamEncoder(_parse(input="x", stream=True), "resp_l", 1, finals.append)
    events = _frames(enc.chunk(_chunk({"content": "ab"}, "length")) + enc.finish(None))
    check_events(events)
    assert events[-1]["type"] == "response.incomplete"
    assert finals[0]["incomplete_details"] == {"reason": "max_output_tokens"}
    enc = ResponsesStreamEncoder(_parse(input="x", stream=True), "resp_f", 1, finals.append)
    events = _frames(enc.chunk(_chunk({"content": "ab"})) + enc.error(GatewayError(502, "upstream broke")))
    check_events(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "upstream broke"}
    assert len(finals) == 1  # a failed stream leaves nothing to store


def test_stream_refusal_is_a_refusal_part() -> None:
    finals: list[dict[str, Any]] = []
    enc = ResponsesStreamEncoder(_parse(input="x", stream=True), "resp_r", 1, finals.append)
    out = enc.chunk(_chunk({"role": "assistant", "refusal": "I can't "}))
    out += enc.chunk(_chunk({"refusal": "help."}, "stop")) + enc.finish(Usage(1, 1))
    events = _frames(out)
    check_events(events)
    assert [e["type"] for e in events if "refusal" in e["type"]] == [
        "response.refusal.delta", "response.refusal.delta", "response.refusal.done"]
    assert finals[0]["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help."}]


def test_reasoning_becomes_a_reasoning_item_streamed_or_not() -> None:
    output, _ = output_items(_completion({"content": "42", "reasoning_content": "Let me think."}))
    assert [o["type"] for o in output] == ["reasoning", "message"]
    assert output[0]["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
    check_response(build_response(_parse(input="x"), "resp_t", 1, output, "completed"))
    finals: list[dict[str, Any]] = []
    enc = ResponsesStreamEncoder(_parse(input="x", stream=True), "resp_t", 1, finals.append)
    out = enc.chunk(_chunk({"role": "assistant", "reasoning_content": "Let me "}))
    out += enc.chunk(_chunk({"reasoning_content": "think."}))
    out += enc.chunk(_chunk({"content": "42"}, "stop")) + enc.finish(Usage(1, 1))
    events = _frames(out)
    check_events(events)
    assert [e["type"] for e in events if "reasoning" in e["type"]] == [
        "response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done"]
    # the reasoning_text part is announced and closed like a message's part (OpenAI's order)
    assert [(e["type"], e["output_index"]) for e in events if e["type"].startswith("response.content_part")] == [
        ("response.content_part.added", 0), ("response.content_part.done", 0),
        ("response.content_part.added", 1), ("response.content_part.done", 1)]
    assert events[3]["part"] == {"type": "reasoning_text", "text": ""}
    assert [o["type"] for o in finals[0]["output"]] == ["reasoning", "message"]
    assert finals[0]["output"][0]["content"][0]["text"] == "Let me think."
    # fed back as history, reasoning is not sent upstream
    assert items_to_messages(finals[0]["output"]) == [{"role": "assistant", "content": "42"}]


SIGNED = [{"type": "thinking", "thinking": "ab", "signature": "SIG"}, {"type": "redacted_thinking", "data": "Zm9v"}]


def test_stream_reasoning_item_carries_signed_thinking() -> None:
    finals: list[dict[str, Any]] = []
    enc = ResponsesStreamEncoder(_parse(input="x", stream=True), "resp_t", 1, finals.append)
    out = enc.chunk(_chunk({"reasoning_content": "ab"}))
    out += enc.chunk(_chunk({"thinking_blocks": [{**SIGNED[0], "index": 0}]}))
    out += enc.chunk(_chunk({"thinking_blocks": [{**SIGNED[1], "index": 1}]}))
    out += enc.chunk(_chunk({"content": "4"}, "stop")) + enc.finish(Usage(1, 1))
    events = _frames(out)
    check_events(events)
    [done] = [e["item"] for e in events
              if e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning"]
    assert blocks_from_encrypted(done["encrypted_content"]) == SIGNED
    assert done["content"] == [{"type": "reasoning_text", "text": "ab"}]
    assert finals[0]["output"][0] == done


def test_stream_redacted_thinking_alone_is_a_reasoning_item() -> None:
    finals: list[dict[str, Any]] = []
    enc = ResponsesStreamEncoder(_parse(input="x", stream=True), "resp_r", 1, finals.append)
    out = enc.chunk(_chunk({"thinking_blocks": [{**SIGNED[1], "index": 0}]}))
    events = _frames(out + enc.chunk(_chunk({"content": "4"}, "stop")) + enc.finish(None))
    check_events(events)
    assert finals[0]["output"][0]["content"] == []
    assert blocks_from_encrypted(finals[0]["output"][0]["encrypted_content"]) == [SIGNED[1]]


def test_items_to_messages_restores_signed_thinking() -> None:
    sealed = encrypted_content(SIGNED)
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
             {"type": "reasoning", "summary": [], "encrypted_content": sealed},
             {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "ok"},
             {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA-foreign"},
             {"type": "reasoning", "summary": [], "encrypted_content": sealed},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}]
    messages = items_to_messages(items)
    assert messages[1] == {"role": "assistant", "content": None, "thinking_blocks": SIGNED, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert messages[3] == {"role": "assistant", "content": "done", "thinking_blocks": SIGNED}
