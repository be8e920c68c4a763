"""What a provider brings to the conformance suite: one :class:`Profile` in ``profiles/<name>.py``.

Every scenario sends the same OpenAI request through the real gateway; the profile says how its
fake upstream answers (golden files in the provider's wire format, which all say the same things:
the ``TEXT``, ``TOOL_*`` and ``JSON_ANSWER`` below) and checks the request its adapter sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.upstream import Recorded

FIXTURES = Path(__file__).parent.parent / "fixtures"

# What every provider's golden answers say.
TEXT = "Hello! How can I help you today?"
USAGE = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}  # in the text and stream answers
TOOL_NAME = "get_weather"
TOOL_ARGS = {"city": "Paris"}
JSON_ANSWER = {"city": "Paris", "temperature_c": 18}

# What every scenario sends.
API_KEY = "sk-conformance-key"
MAX_TOKENS = 50
USER = "conformance-user"
SYSTEM = "You are a terse assistant."
TOOL_RESULT = "18C and sunny"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
JSON_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"}},
    "required": ["city", "temperature_c"],
    "additionalProperties": False,
}
IMAGE_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IMAGE_URI = "data:image/png;base64," + IMAGE_B64

# The answers a profile must provide, and the scenarios whose upstream request it must check.
REPLIES = ("text", "tool_call", "json", "stream", "error_400", "error_401", "error_429", "error_500",
           "error_overloaded")
CHECKS = ("simple_chat", "system_prompt", "multi_turn", "tool_call", "tool_result", "json_schema", "image_input",
          "streaming")


@dataclass(frozen=True)
class Reply:
    """One upstream answer: a golden file (``.sse`` files are streamed frame by frame)."""

    file: str
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (the timeout scenario)


@dataclass(frozen=True)
class Ctx:
    """What a request check gets: the upstream request and what the scenario knows."""

    body: Any  # the JSON body the adapter sent
    request: Recorded
    variant: str  # the provider type this run configured (a profile may run as several)
    model: str  # the upstream model name
    tool_call_id: str | None = None  # in the tool_result scenario: the id the client got


Check = Callable[[Ctx], None]


@dataclass(frozen=True)
class Profile:
    name: str
    fixtures: Path  # the folder holding the files named in ``replies``
    model: str  # the upstream model the gateway's public model points at
    provider: Callable[[str, str], dict[str, Any]]  # (fake upstream URL, variant) -> provider config (no name)
    path: Callable[[str, bool], str]  # (model, stream) -> the URL path the adapter must call
    auth: Callable[[str], tuple[str, str] | None]  # variant -> (header, value) carrying API_KEY, or None
    replies: Mapping[str, Reply]
    checks: Mapping[str, Check]
    retry_after: int  # the retry-after (seconds) a client must see for the error_429 reply
    variants: tuple[str, ...] = ()  # provider types to run as; default (name,)
    skip: Mapping[str, str] = field(default_factory=dict)  # scenario -> why it does not apply

    def runs(self) -> tuple[str, ...]:
        return self.variants or (self.name,)


def text_of(content: Any) -> str:
    """The text of an OpenAI/Anthropic-style content (a string or a list of text blocks)."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))
