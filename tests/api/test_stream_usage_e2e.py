"""Honest usage on every stream (issue 10): an upstream that sends no usage in streams (llama.cpp's
server) still gives the caller a usage chunk, from Fluxway's own count, marked as estimated; the
Anthropic ingress reports counted tokens in message_start and message_delta instead of 0/0."""

from __future__ import annotations

import anthropic
import openai

from tests.support.gateway import run_gateway
from tests.support.openai_bodies import openai_sse
from tests.support.openai_upstream import STREAM, config
from tests.support.replies import streaming
from tests.support.upstream import FakeUpstream

NO_USAGE = [c for c in STREAM if not c.get("usage")]  # what llama.cpp's server streams
PROMPT = [{"role": "user", "content": "Tell me something about the sea, in a few words please."}]
PROMPT_TOKENS = 20


async def test_openai_stream_gets_an_estimated_usage_chunk() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", streaming(openai_sse(NO_USAGE)))
        async with run_gateway(config(up.url)) as gw:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            stream = await client.chat.completions.create(
                model="smart", messages=PROMPT, stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            last = chunks[-1]
            assert text == "Hello there!"
            assert last.choices == [] and last.usage is not None
            # What OpenAI bills gpt-4o-mini for this: "Hello there!" is 3 tokens, and the prompt 13 of
            # content + 3 for the message + 1 for its role + 3 priming the reply (tiktoken's o200k_base).
            assert (last.usage.completion_tokens, last.usage.prompt_tokens) == (3, PROMPT_TOKENS)
            assert last.usage.total_tokens == PROMPT_TOKENS + 3
            assert (last.model_extra or {}).get("x_fluxway") == {"usage_estimated": True}

            # Without include_usage nothing extra is sent.
            stream = await client.chat.completions.create(model="smart", messages=PROMPT, stream=True)  # type: ignore[arg-type]
            assert all(c.usage is None for c in [c async for c in stream])


async def test_anthropic_stream_reports_counted_tokens() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", streaming(openai_sse(NO_USAGE)))
        async with run_gateway(config(up.url)) as gw:
            client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0)
            async with client.messages.stream(model="smart", max_tokens=50, messages=PROMPT) as stream:  # type: ignore[arg-type]
                events = [e async for e in stream]
                final = await stream.get_final_message()
            start = next(e for e in events if e.type == "message_start")
            assert start.message.usage.input_tokens == PROMPT_TOKENS
            assert final.usage.input_tokens == start.message.usage.input_tokens
            assert final.usage.output_tokens == 3
            assert final.content[0].text == "Hello there!"  # type: ignore[union-attr]
