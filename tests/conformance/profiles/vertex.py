"""Google Vertex AI, Gemini models (generateContent / streamGenerateContent?alt=sse).

The request body is the Gemini API's (the checks are the gemini profile's); the URL names the
project, location and publisher, and the token is an OAuth2 bearer (a static ``access_token`` here;
the service-account flow is tested end to end in tests/adapters/test_vertex.py).
"""

from __future__ import annotations

from typing import Any

from tests.conformance.profile import API_KEY, FIXTURES, Profile, Reply
from tests.conformance.profiles import gemini

PROJECT = "conformance-project"
LOCATION = "us-central1"


def provider(url: str, variant: str) -> dict[str, Any]:
    return {"type": "vertex", "base_url": url, "project": PROJECT, "location": LOCATION, "access_token": API_KEY}


def model_path(publisher: str, model: str) -> str:
    return f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/{publisher}/models/{model}"


def path(model: str, stream: bool) -> str:
    return model_path("google", model) + (":streamGenerateContent" if stream else ":generateContent")


_G = "../gemini/"

PROFILE = Profile(
    name="vertex",
    fixtures=FIXTURES / "vertex",
    model="gemini-2.5-flash",
    provider=provider,
    path=path,
    auth=lambda variant: ("authorization", "Bearer " + API_KEY),
    replies={
        "text": Reply(_G + "response_text.json"),
        "tool_call": Reply(_G + "response_tool_call.json"),
        "json": Reply(_G + "response_json.json"),
        "stream": Reply(_G + "stream_text.sse"),
        "error_400": Reply(_G + "error_invalid_argument.json", 400),
        "error_401": Reply("error_unauthenticated.json", 401),
        "error_429": Reply(_G + "error_resource_exhausted.json", 429),  # RetryInfo 34s
        "error_500": Reply(_G + "error_internal.json", 500),
        "error_overloaded": Reply(_G + "error_unavailable.json", 503),
    },
    checks=gemini.PROFILE.checks,
    retry_after=34,
)
