"""The OpenAI schema fixture (tests/fixtures/openai_responses/openapi-subset.json) is what
scripts/extract_openai_schema.py makes of the recorded commit of openai/openai-openapi, and the checks
built on it (tests/support/responses_schema.py) reject what OpenAI's document rejects."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from tests.support.replies import json_reply, sse_reply
from tests.support.responses_schema import (
    SUBSET,
    check,
    check_event,
    check_events,
    check_response,
    checked_http_client,
    document,
)
from tests.support.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    name = "fluxway_extract_openai_schema"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "extract_openai_schema.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ex = _script()

# The components the Responses tests check against (Fluxway emits these events).
NEEDED = [
    "Response", "ResponseStreamEvent", "ResponseItemList", "ErrorResponse", "Error", "ResponseUsage", "ResponseError",
    "OutputItem", "OutputMessage", "OutputTextContent", "RefusalContent", "FunctionToolCall", "ReasoningItem",
    "ReasoningTextContent", "ItemResource", "InputMessageResource", "FunctionToolCallResource",
    "FunctionToolCallOutputResource", "ResponseCreatedEvent", "ResponseInProgressEvent", "ResponseCompletedEvent",
    "ResponseIncompleteEvent", "ResponseFailedEvent", "ResponseErrorEvent", "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent", "ResponseContentPartAddedEvent", "ResponseContentPartDoneEvent",
    "ResponseTextDeltaEvent", "ResponseTextDoneEvent", "ResponseRefusalDeltaEvent", "ResponseRefusalDoneEvent",
    "ResponseReasoningTextDeltaEvent", "ResponseReasoningTextDoneEvent", "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
]


def _keywords(node: Any) -> list[tuple[str, Any]]:
    """Every (keyword, value) in a schema, its data (``enum``, ``const``, property names) aside."""
    if isinstance(node, list):
        return [kv for v in node for kv in _keywords(v)]
    if not isinstance(node, dict):
        return []
    found: list[tuple[str, Any]] = []
    for key, value in node.items():
        found.append((key, value))
        if key in ("properties", "patternProperties", "$defs"):
            found += [kv for sub in value.values() for kv in _keywords(sub)]
        elif key not in ("enum", "const", "required"):
            found += _keywords(value)
    return found


def test_the_fixture_names_its_source_and_holds_what_the_tests_need() -> None:
    doc = document()
    source = doc["x-source"]
    assert source["repository"] == "openai/openai-openapi" and source["path"] == "openapi.json"
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]) and re.match(r"\d{4}-\d\d-\d\dT", source["date"])
    assert source["roots"] == list(ex.ROOTS)
    assert source["commit"] in (ROOT / "tests/fixtures/openai_responses/SOURCES.md").read_text()
    Draft202012Validator.check_schema(doc)
    missing = [name for name in NEEDED if name not in doc["$defs"]]
    assert not missing, missing
    keywords = _keywords(doc["$defs"])
    refs = {v for k, v in keywords if k == "$ref"}
    assert all(r.startswith("#/$defs/") for r in refs), [r for r in refs if not r.startswith("#/$defs/")]
    assert {r.removeprefix("#/$defs/") for r in refs} <= doc["$defs"].keys()
    openapi_only = {k for k, _ in keywords if k in ("nullable", "discriminator", "$recursiveRef", "$recursiveAnchor")
                    or k.startswith("x-")}
    assert not openapi_only, openapi_only


def test_the_fixture_is_what_the_script_makes_of_the_recorded_commit() -> None:
    source = document()["x-source"]
    repo = ex.MIRROR
    if not (repo / "HEAD").exists() and not (repo / ".git").exists():
        pytest.skip(f"no mirror of {source['repository']} at {repo}")
    known = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{source['commit']}^{{commit}}"],
                           capture_output=True, check=False)
    if known.returncode != 0:
        pytest.skip(f"the mirror at {repo} lacks commit {source['commit']}")
    assert ex.render(ex.from_mirror(repo, source["commit"])) == SUBSET.read_text()


# -- the extractor, on a small document -----------------------------------------------------------

SMALL: dict[str, Any] = {
    "openapi": "3.0.0",
    "info": {"version": "1"},
    "components": {"schemas": {
        "Root": {"type": "object", "description": "dropped", "x-oaiMeta": {}, "required": ["pet", "filter", "tag"],
                 "properties": {"pet": {"$ref": "#/components/schemas/Pet"},
                                "filter": {"$ref": "#/components/schemas/Filter"},
                                "tag": {"type": "string", "nullable": True, "enum": ["a", "b"]},
                                "description": {"type": "string"}}},
        "Pet": {"discriminator": {"propertyName": "kind"},
                "oneOf": [{"$ref": "#/components/schemas/Cat"}, {"$ref": "#/components/schemas/Dog"}]},
        "Cat": {"type": "object", "required": ["kind", "lives"],
                "properties": {"kind": {"type": "string", "enum": ["cat"]}, "lives": {"type": "integer"}}},
        "Dog": {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "dog"}}},
        "Filter": {"$recursiveAnchor": True, "type": "object",
                   "properties": {"and": {"type": "array", "items": {"$recursiveRef": "#"}}}},
        "Unused": {"type": "string"},
    }},
}


def _small_validator() -> Draft202012Validator:
    small = copy.deepcopy(SMALL)
    defs = {name: ex.convert(small["components"]["schemas"], small["components"]["schemas"][name], name)
            for name in ex.closure(small["components"]["schemas"], ("Root",))}
    return Draft202012Validator({"$defs": defs, "$ref": "#/$defs/Root"})


def test_the_extractor_keeps_the_closure_and_rewrites_openapi_specifics() -> None:
    components = SMALL["components"]["schemas"]
    assert ex.closure(components, ("Root",)) == ["Cat", "Dog", "Filter", "Pet", "Root"]
    pet = ex.convert(components, components["Pet"], "Pet")
    assert pet["properties"] == {"kind": {"enum": ["cat", "dog"]}} and pet["required"] == ["kind"]
    assert [case["then"] for case in pet["allOf"]] == [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]
    root = ex.convert(components, components["Root"], "Root")
    assert "description" not in root and "x-oaiMeta" not in root and "description" in root["properties"]
    assert root["properties"]["tag"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert ex.convert(components, components["Filter"], "Filter") == {
        "type": "object", "properties": {"and": {"type": "array", "items": {"$ref": "#/$defs/Filter"}}}}
    v = _small_validator()
    good = {"pet": {"kind": "cat", "lives": 9}, "filter": {"and": [{"and": []}]}, "tag": None}
    assert not list(v.iter_errors(good))
    errors = {e.message for e in v.iter_errors({**good, "pet": {"kind": "cat"}})}
    assert errors == {"'lives' is a required property"}  # the branch the discriminator picks, by name
    assert list(v.iter_errors({**good, "pet": {"kind": "cow"}}))
    assert list(v.iter_errors({**good, "filter": {"and": [{"and": 3}]}}))


def test_a_discriminator_whose_branches_share_a_value_keeps_its_union() -> None:
    components = {**SMALL["components"]["schemas"],
                  "Dog": {"type": "object", "required": ["kind"], "properties": {"kind": {"enum": ["cat"]}}}}
    pet = ex.convert(components, components["Pet"], "Pet")
    assert pet == {"oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]}


def test_the_script_writes_from_a_document_file(tmp_path: Path) -> None:
    source, out = tmp_path / "openapi.json", tmp_path / "subset.json"
    source.write_text(json.dumps({**SMALL, "components": {"schemas": {
        **SMALL["components"]["schemas"], **{n: {"type": "object"} for n in ex.ROOTS}}}}))
    assert ex.main(["--document", str(source), "--commit", "c0ffee", "--date", "2026-01-01", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["x-source"]["commit"] == "c0ffee" and sorted(written["$defs"]) == sorted(ex.ROOTS)
    assert ex.main(["--document", str(source), "--commit", "c0ffee", "--date", "2026-01-01", "--out", str(out),
                    "--check"]) == 0
    assert ex.main(["--document", str(source), "--commit", "beef", "--date", "2026-01-01", "--out", str(out),
                    "--check"]) == 1


# -- the checks reject what the document rejects --------------------------------------------------

def _delta(**extra: Any) -> dict[str, Any]:
    return {"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "delta": "Hi", "logprobs": [], **extra}


def _response(**extra: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "error": None,
            "incomplete_details": None, "instructions": None, "model": "m", "tools": [], "output": [],
            "parallel_tool_calls": True, "metadata": {}, "tool_choice": "auto", "temperature": 1.0, "top_p": 1.0,
            **extra}


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ({k: v for k, v in _delta().items() if k != "logprobs"}, "'logprobs' is a required property"),
        ({k: v for k, v in _delta().items() if k != "output_index"}, "'output_index' is a required property"),
        (_delta(delta=None), "None is not of type 'string'"),
        (_delta(type="response.output_text.deltas"), "is not one of"),
        ({"type": "error", "sequence_number": 1, "message": "x", "param": None}, "'code' is a required property"),
        ({"type": "response.completed", "sequence_number": 9, "response": _response(user=None)},
         "None is not of type 'string'"),
    ],
)
def test_a_wrong_event_is_named(event: dict[str, Any], says: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(says)):
        check_event(event)


def test_a_wrong_response_is_named() -> None:
    check_response(_response())
    with pytest.raises(AssertionError, match="'parallel_tool_calls' is a required property"):
        check_response({k: v for k, v in _response().items() if k != "parallel_tool_calls"})
    with pytest.raises(AssertionError, match="usage"):
        check_response(_response(usage=None))
    with pytest.raises(AssertionError, match="ResponseItemList"):
        check("ResponseItemList", {"object": "list", "data": [], "has_more": False})


def _stream(*middle: dict[str, Any], final_output: list[Any] | None = None) -> list[dict[str, Any]]:
    item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    done = {**item, "status": "completed",
            "content": [{"type": "output_text", "text": "Hi", "annotations": [], "logprobs": []}]}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(status="in_progress")},
        {"type": "response.in_progress", "response": _response(status="in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        *middle,
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": _response(output=[done] if final_output is None else final_output)},
    ]
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


PART: dict[str, Any] = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
ADDED = {"type": "response.content_part.added", **PART, "part": {"type": "output_text", "text": "", "annotations": [],
                                                                 "logprobs": []}}
DONE_PART = {"type": "response.content_part.done", **PART, "part": {"type": "output_text", "text": "Hi",
                                                                    "annotations": [], "logprobs": []}}
TEXT_DONE = {"type": "response.output_text.done", **PART, "text": "Hi", "logprobs": []}


def test_a_consistent_stream_passes_and_an_inconsistent_one_is_named() -> None:
    delta = {k: v for k, v in _delta().items() if k != "sequence_number"}
    check_events(_stream(ADDED, delta, TEXT_DONE, DONE_PART))
    with pytest.raises(AssertionError, match="never added"):
        check_events(_stream(delta, TEXT_DONE, DONE_PART))
    with pytest.raises(AssertionError, match="is not its deltas"):
        check_events(_stream(ADDED, delta, {**TEXT_DONE, "text": "Hello"}, DONE_PART))
    with pytest.raises(AssertionError, match="item_id"):
        check_events(_stream(ADDED, {**delta, "item_id": "msg_2"}, TEXT_DONE, DONE_PART))
    with pytest.raises(AssertionError, match="open content parts"):
        check_events(_stream(ADDED, delta, TEXT_DONE))
    with pytest.raises(AssertionError, match="not the items closed"):
        check_events(_stream(ADDED, delta, TEXT_DONE, DONE_PART, final_output=[]))
    events = _stream(ADDED, delta, TEXT_DONE, DONE_PART)
    events[3]["sequence_number"] = 7
    with pytest.raises(AssertionError):
        check_events(events)


# -- the checked client fails a test through the SDK ----------------------------------------------

async def test_the_checked_client_fails_a_wrong_answer_through_the_sdk() -> None:
    bad_text = {"type": "output_text", "text": "Hi", "annotations": []}  # no logprobs
    message = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant", "content": [bad_text]}

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return json_reply(_response(output=[message]))
        events = _stream(ADDED, {k: v for k, v in _delta().items() if k != "sequence_number"}, TEXT_DONE,
                         {**DONE_PART, "part": bad_text}, final_output=[])
        frames = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]
        return await sse_reply(request, frames)

    async with FakeUpstream() as up:
        up.route("POST", "/v1/responses", answer)
        client = openai.AsyncOpenAI(base_url=up.url + "/v1", api_key="k", max_retries=0,
                                    http_client=checked_http_client())
        with pytest.raises(AssertionError, match="'logprobs' is a required property"):
            await client.responses.create(model="m", input="x")
        with pytest.raises(AssertionError, match="'logprobs' is a required property"):
            async with client.responses.stream(model="m", input="x") as stream:
                await stream.get_final_response()
