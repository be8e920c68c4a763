"""POST /v1/messages/count_tokens (issue 13): Anthropic's counting route, answered by Fluxway's own count
for the model's first target, with no upstream call; bad input gets Anthropic-shaped errors."""

from __future__ import annotations

import anthropic
import pytest

from tests.api.test_stream_usage_e2e import PROMPT, PROMPT_TOKENS
from tests.support.gateway import run_gateway
from tests.support.openai_upstream import config
from tests.support.replies import replying
from tests.support.upstream import FakeUpstream

WEATHER_TOOL = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
        "required": ["location"],
    },
}


async def test_counts_without_calling_the_upstream() -> None:
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", replying({}))
        async with run_gateway(config(up.url)) as gw:
            client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0)
            counted = await client.messages.count_tokens(model="smart", messages=PROMPT)  # type: ignore[arg-type]
            # The same count the gateway reports for this prompt when an upstream sends no usage.
            assert counted.input_tokens == PROMPT_TOKENS
            system = await client.messages.count_tokens(
                model="smart", system="Answer briefly.", messages=PROMPT  # type: ignore[arg-type]
            )
            assert system.input_tokens > PROMPT_TOKENS
            tooled = await client.messages.count_tokens(
                model="smart", messages=PROMPT, tools=[WEATHER_TOOL]  # type: ignore[arg-type, list-item]
            )
            assert tooled.input_tokens > PROMPT_TOKENS + 10

            with pytest.raises(anthropic.NotFoundError) as missing:
                await client.messages.count_tokens(model="nope", messages=PROMPT)  # type: ignore[arg-type]
            assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
            with pytest.raises(anthropic.BadRequestError) as bad:
                await client.messages.count_tokens(model="smart", messages="hi")  # type: ignore[arg-type]
            assert "messages" in bad.value.message
    assert up.requests == []
