"""The openai-agents SDK (``Agent`` + ``Runner``) driving Fluxway's Responses API with a function tool.

The model behind Fluxway is the scripted chat upstream (tests/support/responses_upstream.py): it
calls the tool, then answers from the tool's result; the agent loop chains the turns itself. Every
answer the SDK receives is checked on the wire against OpenAI's published OpenAPI document
(tests/support/responses_schema.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool, set_tracing_disabled

from tests.support.gateway import Gateway, run_gateway
from tests.support.responses_schema import checked_http_client
from tests.support.responses_upstream import TOOL_ANSWER, chat
from tests.support.upstream import FakeUpstream

MASTER = "sk-master-test"


@function_tool
def weather(city: str) -> str:
    """Current weather in a city."""
    return f"{city}: 18C, sunny"


@pytest.fixture
async def gw() -> AsyncIterator[tuple[Gateway, FakeUpstream]]:
    set_tracing_disabled(True)  # nothing leaves this machine
    async with FakeUpstream() as up:
        up.route("POST", "/v1/chat/completions", chat)
        cfg = {
            "auth": {"master_key": MASTER},
            "providers": [{"name": "up", "type": "openai", "base_url": up.url + "/v1", "api_keys": ["sk-up"]}],
            "models": [{"name": "smart", "targets": [{"provider": "up", "model": "gpt-4o-mini"}]}],
        }
        async with run_gateway(cfg) as gateway:
            yield gateway, up


def _agent(gw: Gateway) -> Agent:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=MASTER, max_retries=0,
                                http_client=checked_http_client())
    return Agent(name="forecaster", instructions="Use the weather tool.", tools=[weather],
                 model=OpenAIResponsesModel(model="smart", openai_client=client))


async def test_runner_run_calls_the_tool_then_answers(gw: tuple[Gateway, FakeUpstream]) -> None:
    gateway, up = gw
    result = await Runner.run(_agent(gateway), "Weather in Paris?", run_config=RunConfig(tracing_disabled=True))
    assert result.final_output == f"{TOOL_ANSWER} (Paris: 18C, sunny)"
    assert len(up.requests) == 2
    sent = up.requests[-1].json()["messages"]
    assert sent[0] == {"role": "system", "content": "Use the weather tool."}
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "Paris: 18C, sunny"}


async def test_runner_run_streamed(gw: tuple[Gateway, FakeUpstream]) -> None:
    gateway, up = gw
    result = Runner.run_streamed(_agent(gateway), "Weather in Paris?", run_config=RunConfig(tracing_disabled=True))
    kinds = [event.type async for event in result.stream_events()]
    assert result.final_output == f"{TOOL_ANSWER} (Paris: 18C, sunny)"
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert len(up.requests) == 2 and all(r.json()["stream"] for r in up.requests)
