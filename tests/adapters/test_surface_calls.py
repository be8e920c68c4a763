"""Where each adapter sends the pass-through endpoints, how it signs them, and which it serves."""

from __future__ import annotations

import pytest

from fluxway.adapters.azure import DEFAULT_API_VERSION, AzureAdapter
from fluxway.adapters.cohere import CohereAdapter
from fluxway.adapters.openai_compat import OpenAICompatAdapter
from fluxway.adapters.presets import PRESETS
from fluxway.adapters.registry import create_adapter
from fluxway.adapters.settings import (
    AnthropicSettings,
    AzureSettings,
    CohereSettings,
    GeminiSettings,
    OpenAICompatSettings,
)
from fluxway.canonical import SURFACE_PATHS, Credentials, Endpoint, Target, UpstreamError

CREDS = Credentials("sk-1")
SURFACE = tuple(SURFACE_PATHS)


def test_openai_sends_each_endpoint_under_its_base_url_with_bearer_auth() -> None:
    a = OpenAICompatAdapter(OpenAICompatSettings(name="o", type="openai", api_keys=("k",)))
    call = a.surface_call(Endpoint.FILES, Target("o", "files"), CREDS, "GET", "/file-1/content", "a=1&b=2")
    assert (call.method, call.url) == ("GET", "https://api.openai.com/v1/files/file-1/content?a=1&b=2")
    assert call.headers["authorization"] == "Bearer sk-1" and "content-type" not in call.headers
    call = a.surface_call(Endpoint.TRANSCRIPTIONS, Target("o", "whisper-1"), CREDS, "POST", body=b"x",
                          content_type="multipart/form-data; boundary=q")
    assert call.url.endswith("/v1/audio/transcriptions") and call.body == b"x"
    assert call.headers["content-type"] == "multipart/form-data; boundary=q"
    assert [e for e in SURFACE if a.supports(e)] == [e for e in SURFACE if e is not Endpoint.RERANK]


def test_presets_serve_what_their_row_lists() -> None:
    for name, preset in PRESETS.items():
        kwargs = {"base_url": "http://x/v1"} if preset.base_url is None else {}
        a = create_adapter(OpenAICompatSettings(name="p", type=name, api_keys=("k",), **kwargs))
        assert {e for e in SURFACE if a.supports(e)} == set(preset.surface), name
        assert a.supports(Endpoint.CHAT) is preset.chat  # False only for embeddings-only APIs (Voyage, Jina)


@pytest.mark.parametrize(("version", "endpoint", "url"), [
    (None, Endpoint.IMAGES,
     f"https://r.openai.azure.com/openai/deployments/dalle/images/generations?api-version={DEFAULT_API_VERSION}"),
    (None, Endpoint.SPEECH, f"https://r.openai.azure.com/openai/deployments/dalle/audio/speech?api-version={DEFAULT_API_VERSION}"),
    (None, Endpoint.FILES, f"https://r.openai.azure.com/openai/files/f-1?api-version={DEFAULT_API_VERSION}&limit=2"),
    ("v1", Endpoint.BATCHES, "https://r.openai.azure.com/openai/v1/batches/f-1?limit=2"),
    ("v1", Endpoint.IMAGES, "https://r.openai.azure.com/openai/v1/images/generations"),
])
def test_azure_urls(version: str | None, endpoint: Endpoint, url: str) -> None:
    a = AzureAdapter(AzureSettings(name="az", type="azure", base_url="https://r.openai.azure.com/openai",
                                   api_keys=("k",), api_version=version))
    per_deployment = endpoint in (Endpoint.IMAGES, Endpoint.SPEECH)
    suffix, query = ("", "") if per_deployment else ("/f-1", "limit=2")
    call = a.surface_call(endpoint, Target("az", "dalle"), CREDS, "GET", suffix, query)
    assert call.url == url
    assert call.headers["api-key"] == "sk-1" and "authorization" not in call.headers
    assert not a.supports(Endpoint.RERANK)


def test_cohere_reranks_on_v2_and_nothing_else() -> None:
    a = CohereAdapter(CohereSettings(name="co", type="cohere", api_keys=("k",)))
    call = a.surface_call(Endpoint.RERANK, Target("co", "rerank-v3.5"), CREDS, "POST", body=b"{}",
                          content_type="application/json")
    assert call.url == "https://api.cohere.com/v2/rerank" and call.headers["authorization"] == "Bearer sk-1"
    assert [e for e in SURFACE if a.supports(e)] == [Endpoint.RERANK]
    with pytest.raises(UpstreamError):
        a.surface_call(Endpoint.IMAGES, Target("co", "x"), CREDS, "POST")


def test_anthropic_and_gemini_serve_none_of_it() -> None:
    for cfg in (AnthropicSettings(name="a", type="anthropic", api_keys=("k",)),
                GeminiSettings(name="g", type="gemini", api_keys=("k",))):
        a = create_adapter(cfg)
        assert not any(a.supports(e) for e in SURFACE)
