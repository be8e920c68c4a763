"""Google Vertex AI, Anthropic models (rawPredict / streamRawPredict), run as provider type ``vertex``.

The body is the Messages API's (the anthropic profile's checks) without ``model`` and with
``anthropic_version: vertex-2023-10-16`` (Anthropic's "Claude on Vertex AI").
"""

from __future__ import annotations

from tests.conformance.profile import API_KEY, FIXTURES, MAX_TOKENS, USER, Ctx, Profile, Reply
from tests.conformance.profiles import anthropic
from tests.conformance.profiles.vertex import model_path, provider


def path(model: str, stream: bool) -> str:
    return model_path("anthropic", model) + (":streamRawPredict" if stream else ":rawPredict")


def simple_chat(ctx: Ctx) -> None:
    b = ctx.body
    assert b["anthropic_version"] == "vertex-2023-10-16"
    assert "model" not in b  # the URL names it
    assert "anthropic-version" not in ctx.request.headers
    assert b["messages"] == [{"role": "user", "content": "Say hello"}]
    assert b["max_tokens"] == MAX_TOKENS
    assert b["metadata"] == {"user_id": USER}
    assert "system" not in b and "stream" not in b


def streaming(ctx: Ctx) -> None:
    anthropic.streaming(ctx)
    assert ctx.body["anthropic_version"] == "vertex-2023-10-16" and "model" not in ctx.body


_A = "../anthropic/"

PROFILE = Profile(
    name="vertex_anthropic",
    fixtures=FIXTURES / "vertex",
    model="claude-sonnet-4-5@20250929",
    provider=provider,
    path=path,
    auth=lambda variant: ("authorization", "Bearer " + API_KEY),
    replies={
        "text": Reply(_A + "response_text.json"),
        "tool_call": Reply(_A + "response_tool_use.json"),
        "json": Reply(_A + "response_json.json"),
        "stream": Reply(_A + "stream_text.sse"),
        "error_400": Reply(_A + "error_invalid_request.json", 400),
        "error_401": Reply("error_unauthenticated.json", 401),
        "error_429": Reply("error_quota.json", 429, {"retry-after": "17"}),
        "error_500": Reply(_A + "error_api.json", 500),
        "error_overloaded": Reply(_A + "error_overloaded.json", 529),
    },
    checks={**anthropic.PROFILE.checks, "simple_chat": simple_chat, "streaming": streaming},
    retry_after=17,
    variants=("vertex",),
)
