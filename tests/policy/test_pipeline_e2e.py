"""The hook pipeline (issue 13) through HTTP and the official SDKs: order from config, post hooks in
reverse, a stream hook rewriting and dropping chunks, post hooks seeing the assembled answer, a
short-circuit answering whole or as a stream in both wire shapes, typed per-call slots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic
import openai
import pytest

from fluxway.canonical import CanonicalResponse, StreamChunk
from fluxway.config import ConfigError, parse
from fluxway.policy.hooks import CallContext, Outcome, ShortCircuit, Slot
from tests.support.gateway import Gateway, run_gateway
from tests.support.openai_upstream import COMPLETION, config, openai_upstream

HI: list[Any] = [{"role": "user", "content": "Hi"}]
SEEN: Slot[str] = Slot("test.seen")


class Recorder:
    """Appends what it sees to a shared log; keeps a typed slot from pre to post."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        self.log.append(f"pre:{self.name}")
        ctx.put(SEEN, f"{ctx.get(SEEN) or ''}{self.name}")
        return None

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        self.log.append(f"post:{self.name}:{ctx.get(SEEN)}")


class Shouter:
    """A stream hook: upper-cases text, drops the chunk that says 'lo ', and wants the whole answer."""

    name = "shouter"
    wants_response = True

    def __init__(self) -> None:
        self.answers: list[CanonicalResponse | None] = []

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        return None

    async def chunk(self, ctx: CallContext, chunk: StreamChunk) -> Sequence[StreamChunk]:
        for choice in chunk.data.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content") == "lo ":
                return []
            if delta.get("content"):
                delta["content"] = delta["content"].upper()
                chunk.raw = None
        return [chunk]

    async def end(self, ctx: CallContext) -> Sequence[StreamChunk]:
        return []

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        self.answers.append(outcome.response)


class Canned:
    """Answers every call itself, as a cache hit would."""

    name = "canned"

    async def pre(self, ctx: CallContext) -> ShortCircuit | None:
        return ShortCircuit(CanonicalResponse(dict(COMPLETION)))

    async def post(self, ctx: CallContext, outcome: Outcome) -> None:
        return None


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    async with (
        openai_upstream() as up,
        run_gateway(config(up.url, pipeline=["auth", "budget", "limits", "usage"])) as g,
    ):
        yield g


def _client(gw: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)


async def test_the_order_comes_from_config_and_post_hooks_run_in_reverse(gw: Gateway) -> None:
    pipeline = gw.runtime.pipeline
    assert [h.name for h in pipeline.hooks] == ["auth", "budget", "limits", "usage"]
    log: list[str] = []
    pipeline.replace([*pipeline.hooks, Recorder("a", log), Recorder("b", log)])
    await _client(gw).chat.completions.create(model="smart", messages=HI)
    # b wraps nothing, a wraps b: pre a, b; post b, a; each post reads the typed slot pre filled.
    assert log == ["pre:a", "pre:b", "post:b:ab", "post:a:ab"]


def test_a_bad_pipeline_is_a_config_error_with_its_index() -> None:
    base: dict[str, Any] = {"providers": [], "models": []}
    with pytest.raises(ConfigError) as info:
        parse({**base, "pipeline": ["auth", "caching", "usage"]}, {})
    assert any(p.startswith("pipeline[1]: unknown stage 'caching'") for p in info.value.problems)
    with pytest.raises(ConfigError) as info:
        parse({**base, "pipeline": ["limits", "auth"]}, {})
    # usage missing, auth not first
    assert {p.split(":")[0] for p in info.value.problems} == {"pipeline", "pipeline[0]"}


async def test_a_stream_hook_rewrites_and_drops_chunks_and_post_sees_the_assembled_answer(gw: Gateway) -> None:
    shouter = Shouter()
    gw.runtime.pipeline.replace([*gw.runtime.pipeline.hooks, shouter])
    stream = await _client(gw).chat.completions.create(model="smart", messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in [c async for c in stream] if c.choices)
    assert text == "HELTHERE!"
    answer = shouter.answers[0]
    assert answer is not None and answer.body["choices"][0]["message"]["content"] == "HELTHERE!"
    assert answer.body["choices"][0]["finish_reason"] == "stop" and answer.usage is not None
    # A whole answer reaches the same post hook as it is.
    await _client(gw).chat.completions.create(model="smart", messages=HI)
    whole = shouter.answers[1]
    assert whole is not None and whole.body["choices"][0]["message"]["content"] == "Hello there!"


async def test_a_short_circuit_answers_whole_or_as_a_stream_in_both_shapes(gw: Gateway) -> None:
    gw.runtime.pipeline.replace([*gw.runtime.pipeline.hooks, Canned()])
    client = _client(gw)
    raw = await client.chat.completions.with_raw_response.create(model="smart", messages=HI)
    assert raw.parse().choices[0].message.content == "Hello there!"
    assert raw.headers["x-fluxway-cache"] == "hit"
    stream = await client.chat.completions.create(model="smart", messages=HI, stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    claude = anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0)
    async with claude.messages.stream(model="smart", max_tokens=20, messages=HI) as s:
        final = await s.get_final_message()
    assert final.content[0].text == "Hello there!"  # type: ignore[union-attr]
    whole = await claude.messages.create(model="smart", max_tokens=20, messages=HI)
    assert whole.content[0].text == "Hello there!"  # type: ignore[union-attr]
