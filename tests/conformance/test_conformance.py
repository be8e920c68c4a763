"""The provider conformance suite: every profile in ``profiles/`` runs every scenario end to end.

official ``openai`` client -> the real gateway (``run_gateway``) -> a fake upstream answering with the
profile's golden files. Each scenario asserts what the client got and, through the profile's
checks, the request the adapter sent upstream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import openai
import pytest
from aiohttp import web

from fluxway.adapters.presets import PRESETS
from fluxway.adapters.registry import ADAPTERS
from fluxway.canonical import ErrorKind
from tests.conformance.profile import (
    API_KEY,
    CHECKS,
    IMAGE_URI,
    JSON_ANSWER,
    JSON_SCHEMA,
    MAX_TOKENS,
    REPLIES,
    SYSTEM,
    TEXT,
    TOOL_ARGS,
    TOOL_NAME,
    TOOL_RESULT,
    USAGE,
    USER,
    WEATHER_SCHEMA,
    Ctx,
    Profile,
    Reply,
)
from tests.conformance.profiles import load
from tests.conformance.profiles.embeddings import DIMENSIONS, INPUT
from tests.support.gateway import Gateway, run_gateway
from tests.support.replies import sse_events, sse_reply
from tests.support.upstream import FakeUpstream, Recorded

PROFILES = load()
RUNS = [(p, v) for p in PROFILES for v in p.runs()]
PUBLIC_MODEL = "conformance"
PROVIDER = "upstream"
TIMEOUT = 0.3  # the provider's first-token timeout in the timeout scenario

TOOLS: Any = [{"type": "function", "function": {
    "name": TOOL_NAME, "description": "Current weather for a city", "parameters": WEATHER_SCHEMA}}]


@dataclass
class Harness:
    profile: Profile
    variant: str
    up: FakeUpstream
    script: list[Reply] = field(default_factory=list)
    gw: Gateway | None = None
    client: openai.AsyncOpenAI | None = None

    @property
    def openai(self) -> openai.AsyncOpenAI:
        assert self.client is not None
        return self.client

    def answer(self, *names: str, **changes: Any) -> None:
        """The upstream's next answers, by reply name; the last one repeats."""
        self.script = [replace(self.profile.replies[n], **changes) for n in names]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        reply = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if reply.delay:
            await asyncio.sleep(reply.delay)
        data = (self.profile.fixtures / reply.file).read_bytes()
        if reply.file.endswith(".sse"):
            return await sse_reply(request, sse_events(data), headers=dict(reply.headers))
        return web.Response(body=data, status=reply.status, headers=dict(reply.headers),
                            content_type="application/json")

    def check(
        self, scenario: str | None, *, stream: bool = False, index: int = -1, tool_call_id: str | None = None
    ) -> None:
        """Generic checks on an upstream request, then the profile's own for ``scenario``."""
        rec: Recorded = self.up.requests[index]
        p = self.profile
        assert rec.method == "POST"
        assert rec.path == p.path(p.model, stream)
        auth = p.auth(self.variant)
        if auth is None:
            assert "authorization" not in rec.headers
        else:
            assert rec.headers.get(auth[0]) == auth[1], f"{auth[0]} header"
        if scenario is not None:
            p.checks[scenario](Ctx(rec.json(), rec, self.variant, p.model, tool_call_id))


@pytest.fixture(params=RUNS, ids=[v if v == p.name else f"{p.name}-{v}" for p, v in RUNS])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    profile, variant = request.param
    async with FakeUpstream() as up:
        harness = Harness(profile, variant, up)
        for stream in (False, True):
            up.route("POST", profile.path(profile.model, stream), harness.handle)
        config = {
            "providers": [{"name": PROVIDER, **profile.provider(up.url, variant),
                           "timeout": {"connect": 2, "first_token": TIMEOUT, "total": 5}}],
            "models": [{"name": PUBLIC_MODEL, "targets": [{"provider": PROVIDER, "model": profile.model}],
                        "retry": {"attempts": 1}}],
        }
        async with run_gateway(config) as gw:
            harness.gw = gw
            async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="client-key", max_retries=0,
                                          timeout=10) as client:
                harness.client = client
                yield harness


def _skip(h: Harness, scenario: str) -> None:
    if scenario in h.profile.skip:
        pytest.skip(h.profile.skip[scenario])


# -- the profiles themselves ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES, ids=[p.name for p in PROFILES])
def test_profile_is_complete(profile: Profile) -> None:
    replies = set(REPLIES) - set(profile.skip)  # a skipped scenario needs no answer
    checks = set(CHECKS) - set(profile.skip)
    assert replies <= set(profile.replies), f"missing replies: {replies - set(profile.replies)}"
    assert checks <= set(profile.checks), f"missing checks: {checks - set(profile.checks)}"
    assert ("embeddings" in profile.replies) == ("embeddings" in profile.checks)
    assert replies or "embeddings" in profile.replies, "a profile runs at least one scenario"
    for name, reply in profile.replies.items():
        assert (profile.fixtures / reply.file).is_file(), f"{name}: no fixture {reply.file}"
    if "error_429" in replies:
        assert profile.replies["error_429"].status == 429
    assert API_KEY  # profiles send this key upstream


def test_every_registered_provider_type_joined() -> None:
    """Each provider type the registry serves (a preset or a native adapter) runs every scenario: as
    a profile of its own, or as a variant of one (the OpenAI-compatible presets share ``openai``)."""
    registered = set(PRESETS) | set(ADAPTERS)
    run = {variant for _, variant in RUNS}
    assert not registered - run, (
        f"provider types with no conformance profile: {sorted(registered - run)}; add a module to"
        " tests/conformance/profiles/ (or a variant of an existing profile, with its dialect)"
    )
    assert not run - registered, f"profiles run as types the registry does not know: {sorted(run - registered)}"


# -- scenarios ------------------------------------------------------------------------------------


async def test_simple_chat(h: Harness) -> None:
    _skip(h, "simple_chat")
    h.answer("text")
    raw = await h.openai.chat.completions.with_raw_response.create(
        model=PUBLIC_MODEL, messages=[{"role": "user", "content": "Say hello"}],
        max_completion_tokens=MAX_TOKENS, user=USER,
    )
    resp = raw.parse()
    assert raw.headers["x-fluxway-provider"] == PROVIDER
    assert raw.headers["x-fluxway-attempts"] == "1"
    assert resp.object == "chat.completion"
    [choice] = resp.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == TEXT
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.model_dump(include=set(USAGE)) == USAGE
    assert len(h.up.requests) == 1
    h.check("simple_chat")


async def test_system_prompt(h: Harness) -> None:
    _skip(h, "system_prompt")
    h.answer("text")
    resp = await h.openai.chat.completions.create(
        model=PUBLIC_MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Say hello"}],
    )
    assert resp.choices[0].message.content == TEXT
    h.check("system_prompt")


async def test_multi_turn(h: Harness) -> None:
    _skip(h, "multi_turn")
    h.answer("text")
    resp = await h.openai.chat.completions.create(
        model=PUBLIC_MODEL,
        messages=[
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            {"role": "user", "content": "What is my name?"},
        ],
    )
    assert resp.choices[0].message.content == TEXT
    h.check("multi_turn")


async def test_tool_call_and_result_round_trip(h: Harness) -> None:
    _skip(h, "tool_call")
    h.answer("tool_call", "text")
    question: Any = {"role": "user", "content": "What's the weather in Paris?"}
    first = await h.openai.chat.completions.create(
        model=PUBLIC_MODEL, messages=[question], tools=TOOLS, tool_choice="auto",
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == TOOL_NAME
    assert json.loads(call.function.arguments) == TOOL_ARGS
    assert call.id
    h.check("tool_call")

    assistant: Any = choice.message.model_dump(include={"role", "content", "tool_calls"}, exclude_none=True)
    second = await h.openai.chat.completions.create(
        model=PUBLIC_MODEL, tools=TOOLS,
        messages=[question, assistant, {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT}],
    )
    assert second.choices[0].message.content == TEXT
    assert len(h.up.requests) == 2
    h.check("tool_result", tool_call_id=call.id)


async def test_json_schema(h: Harness) -> None:
    _skip(h, "json_schema")
    h.answer("json")
    resp = await h.openai.chat.completions.create(
        model=PUBLIC_MODEL,
        messages=[{"role": "user", "content": "The weather in Paris, as JSON."}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "weather", "strict": True, "schema": JSON_SCHEMA}},
    )
    content = resp.choices[0].message.content
    assert content is not None and json.loads(content) == JSON_ANSWER
    assert resp.choices[0].finish_reason == "stop"
    h.check("json_schema")


async def test_image_input(h: Harness) -> None:
    _skip(h, "image_input")
    h.answer("text")
    resp = await h.openai.chat.completions.create(
        model=PUBLIC_MODEL,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": IMAGE_URI}},
        ]}],
    )
    assert resp.choices[0].message.content == TEXT
    h.check("image_input")


async def test_streaming_with_usage(h: Harness) -> None:
    _skip(h, "streaming")
    h.answer("stream")
    stream = await h.openai.chat.completions.create(
        model=PUBLIC_MODEL, messages=[{"role": "user", "content": "Say hello"}],
        stream=True, stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.model_dump(include=set(USAGE)) == USAGE
    assert all(c.usage is None for c in chunks[:-1])
    h.check("streaming", stream=True)


async def test_embeddings(h: Harness) -> None:
    if "embeddings" not in h.profile.replies:
        pytest.skip("this profile has no embeddings scenario")
    h.answer("embeddings")
    resp = await h.openai.embeddings.create(model=PUBLIC_MODEL, input=INPUT, dimensions=DIMENSIONS,
                                            user=USER, encoding_format="float")
    assert [d.embedding for d in resp.data] == [[0.25, -0.5, 0.125]]
    assert len(h.up.requests) == 1
    h.check("embeddings")


# The status a client sees, and the ErrorKind the adapter must have classified (named in the message).
ERRORS = {
    "error_400": (400, ErrorKind.BAD_REQUEST),
    "error_401": (502, ErrorKind.AUTH),
    "error_429": (429, ErrorKind.RATE_LIMITED),
    "error_500": (502, ErrorKind.UPSTREAM_5XX),
    "error_overloaded": (502, ErrorKind.OVERLOADED),
}


def _message(error_body: Any) -> str:
    """The message in an upstream error body: ``{"error": {"message"}}`` or a top-level message."""
    inner = error_body.get("error") if isinstance(error_body, dict) else None
    for holder in (inner, error_body):
        if isinstance(holder, dict):
            for key in ("message", "Message"):
                if isinstance(holder.get(key), str):
                    return str(holder[key])
    raise AssertionError(f"no message in the error fixture {error_body!r}")


@pytest.mark.parametrize("reply", list(ERRORS))
async def test_upstream_errors(h: Harness, reply: str) -> None:
    _skip(h, reply)
    status, kind = ERRORS[reply]
    h.answer(reply)
    with pytest.raises(openai.APIStatusError) as exc:
        await h.openai.chat.completions.create(model=PUBLIC_MODEL, messages=[{"role": "user", "content": "Say hello"}])
    err = exc.value
    assert err.status_code == status
    assert len(h.up.requests) == 1
    body = err.body if isinstance(err.body, dict) else {}
    assert isinstance(body.get("message"), str) and body["message"]
    if reply == "error_400":  # the caller's fault: the upstream's own words reach the client
        fixture = json.loads((h.profile.fixtures / h.profile.replies[reply].file).read_text())
        assert _message(fixture).strip() in body["message"]
    else:  # what was tried, and how each failure was classified
        assert f": {kind.value} (" in body["message"]
    if reply == "error_429":
        assert err.response.headers["retry-after"] == str(h.profile.retry_after)
    h.check(None, index=0)


async def test_timeout(h: Harness) -> None:
    _skip(h, "timeout")
    h.answer("text", delay=TIMEOUT * 10)
    with pytest.raises(openai.APIStatusError) as exc:
        await h.openai.chat.completions.create(model=PUBLIC_MODEL, messages=[{"role": "user", "content": "Say hello"}])
    assert exc.value.status_code == 504
    assert len(h.up.requests) == 1
