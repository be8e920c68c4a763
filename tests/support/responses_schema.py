"""Checks the Responses API's wire output against OpenAI's published OpenAPI document: Response
objects, stream events, input item pages and error bodies, each against its component in
tests/fixtures/openai_responses/openapi-subset.json (extracted by scripts/extract_openai_schema.py
from openai/openai-openapi at the commit its ``x-source`` header names).

:func:`checked_http_client` is an HTTP client for the openai SDK (and the Agents SDK through it)
that checks every ``/v1/responses`` answer on the wire as it arrives, JSON or event stream, so a test
driving the SDKs checks all it receives without saying so.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the HTTP client the openai SDK ships with
import jsonschema
from jsonschema import Draft202012Validator

SUBSET = Path(__file__).parents[1] / "fixtures" / "openai_responses" / "openapi-subset.json"
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@cache
def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SUBSET.read_text())
    return doc


@cache
def _validator(name: str) -> Draft202012Validator:
    doc = document()
    assert name in doc["$defs"], f"{name} is not in {SUBSET.name}"
    return Draft202012Validator({"$schema": doc["$schema"], "$defs": doc["$defs"], "$ref": f"#/$defs/{name}"})


def check(name: str, value: Any) -> None:
    """``value`` against component ``name``; the error names the deepest failing field."""
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(value))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top)"
        raise AssertionError(f"{name} at {where}: {error.message}\n  value: {json.dumps(value)[:2000]}")


def check_response(response: Any) -> None:
    check("Response", response)


def check_item_list(page: Any) -> None:
    check("ResponseItemList", page)


def check_error(body: Any) -> None:
    check("ErrorResponse", body)


def check_event(event: Any) -> None:
    check("ResponseStreamEvent", event)
    if isinstance(event, dict) and isinstance(event.get("response"), dict):
        check_response(event["response"])  # reached through the union above, but named here when wrong


def check_events(events: list[dict[str, Any]], *, complete: bool = True) -> None:
    """Each event against the schema, sequence numbers 0, 1, 2, ..., and the stream consistent with
    itself (:class:`_StreamState`); with ``complete``, the whole lifecycle."""
    state = _StreamState()
    for n, event in enumerate(events):
        check_event(event)
        assert event["sequence_number"] == n, (n, event)
        state.feed(event)
    if not complete:
        return
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] in TERMINAL, kinds
    assert sum(k in TERMINAL for k in kinds) == 1, kinds


class _StreamState:
    """What the schema cannot say, as OpenAI's streams and the SDKs' accumulators have it: items are
    announced in output order and closed once; a delta names an open item (its ``item_id`` and
    ``output_index``) and an open content part of it (``content_part.added`` first); a ``.done``
    carries what its deltas added up to; the final response's output is the items closed, in order."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.items: list[dict[str, Any]] = []  # as added
        self.done: dict[int, dict[str, Any]] = {}  # output index -> the item as closed
        self.parts: dict[tuple[int, int], str] = {}  # (output index, content index) -> text so far
        self.closed_parts: set[tuple[int, int]] = set()
        self.arguments: dict[int, str] = {}

    def _open_item(self, event: dict[str, Any]) -> dict[str, Any]:
        index = event["output_index"]
        assert 0 <= index < len(self.items), f"{event['type']}: no item at output_index {index}"
        assert index not in self.done, f"{event['type']}: item {index} is already done"
        item: dict[str, Any] = self.items[index]
        if "item_id" in event:
            assert event["item_id"] == item.get("id"), f"{event['type']}: item_id {event['item_id']} != {item['id']}"
        return item

    def _open_part(self, event: dict[str, Any]) -> tuple[int, int]:
        self._open_item(event)
        key = (event["output_index"], event["content_index"])
        assert key in self.parts, f"{event['type']}: content part {key} was never added (content_part.added)"
        assert key not in self.closed_parts, f"{event['type']}: content part {key} is already done"
        return key

    def feed(self, event: dict[str, Any]) -> None:
        kind: str = event["type"]
        if "response" in event:
            rid = event["response"]["id"]
            assert self.response_id in (None, rid), f"{kind}: the response id changed"
            self.response_id = rid
        if kind == "response.output_item.added":
            assert event["output_index"] == len(self.items), f"{kind}: output_index {event['output_index']}"
            assert event["item"].get("status") in (None, "in_progress"), event
            self.items.append(event["item"])
        elif kind == "response.content_part.added":
            self._open_item(event)
            key = (event["output_index"], event["content_index"])
            assert key not in self.parts, f"{kind}: part {key} added twice"
            self.parts[key] = ""
        elif kind in ("response.output_text.delta", "response.refusal.delta", "response.reasoning_text.delta"):
            self.parts[self._open_part(event)] += event["delta"]
        elif kind in ("response.output_text.done", "response.refusal.done", "response.reasoning_text.done"):
            key = self._open_part(event)
            text = event["refusal" if kind == "response.refusal.done" else "text"]
            assert text == self.parts[key], f"{kind}: {text!r} is not its deltas {self.parts[key]!r}"
        elif kind == "response.content_part.done":
            key = self._open_part(event)
            part = event["part"]
            assert part.get("text", part.get("refusal")) == self.parts[key], f"{kind}: {part} != its deltas"
            self.closed_parts.add(key)
        elif kind == "response.function_call_arguments.delta":
            self._open_item(event)
            self.arguments[event["output_index"]] = self.arguments.get(event["output_index"], "") + event["delta"]
        elif kind == "response.function_call_arguments.done":
            self._open_item(event)
            assert event["arguments"] == self.arguments.get(event["output_index"], ""), f"{kind}: not its deltas"
        elif kind == "response.output_item.done":
            index = event["output_index"]
            item = self._open_item(event)
            closed = event["item"]
            assert (closed["type"], closed.get("id")) == (item["type"], item.get("id")), f"{kind}: a different item"
            parts = [k for k in self.parts if k[0] == index]
            assert all(k in self.closed_parts for k in parts), f"{kind}: item {index} has open content parts"
            self.done[index] = closed
        elif kind in ("response.completed", "response.incomplete"):
            assert len(self.done) == len(self.items), f"{kind}: items still open"
            assert event["response"]["output"] == [self.done[i] for i in range(len(self.items))], \
                f"{kind}: the output is not the items closed, in order"
        elif kind == "response.failed":
            assert all(item in self.done.values() for item in event["response"]["output"]), kind


def sse_events(body: bytes) -> list[dict[str, Any]]:
    """The events of a complete ``text/event-stream`` body, each ``event:`` name checked against ``type``."""
    events: list[dict[str, Any]] = []
    for frame in body.decode().replace("\r\n", "\n").split("\n\n"):
        if not frame.strip():
            continue
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if not line.startswith(":"))
        event = json.loads(fields["data"])
        assert fields.get("event") == event["type"], (fields.get("event"), event)
        events.append(event)
    return events


def check_answer(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """One answer of the Responses API's routes, by route and status, against its schema."""
    if content_type.startswith("text/event-stream"):
        check_events(sse_events(body))
        return
    value = json.loads(body)
    if status >= 400:
        check_error(value)
    elif path.endswith("/input_items"):
        check_item_list(value)
    elif method in ("GET", "POST"):
        check_response(value)
    # DELETE's 200 has no schema in the document


def _responses_route(path: str) -> bool:
    return path.rstrip("/").endswith("/v1/responses") or "/v1/responses/" in path


class _Checked(httpx.AsyncByteStream):
    """A response body passed through as it arrives, checked once it has all been read."""

    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request, response: httpx.Response) -> None:
        self._inner = inner
        self._request = request
        self._response = response
        self._body = bytearray()
        self._checked = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            self._body += part
            yield part
        self._checked = True
        check_answer(self._request.method, self._request.url.path, self._response.status_code,
                     self._response.headers.get("content-type", ""), bytes(self._body))

    async def aclose(self) -> None:
        await self._inner.aclose()
        if not self._checked and self._response.headers.get("content-type", "").startswith("text/event-stream"):
            self._checked = True  # closed early: the events that arrived whole, without the lifecycle
            whole = bytes(self._body).rpartition(b"\n\n")[0]
            check_events(sse_events(whole), complete=False)


class CheckingTransport(httpx.AsyncBaseTransport):
    """Passes requests through; every answer of a ``/v1/responses`` route is checked against the schema."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if not _responses_route(request.url.path):
            return response
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _Checked(stream, request, response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def checked_http_client() -> httpx.AsyncClient:
    """For ``openai.AsyncOpenAI(http_client=...)``: every Responses API answer checked on the wire."""
    return httpx.AsyncClient(transport=CheckingTransport(), timeout=60.0)
