"""Azure OpenAI adapter: URLs (deployments and v1), api-key auth, content-filter classification, streams."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fluxway.adapters.azure import DEFAULT_API_VERSION, AzureAdapter
from fluxway.adapters.registry import create_adapter
from fluxway.adapters.settings import AzureSettings
from fluxway.canonical import CanonicalRequest, Credentials, Endpoint, ErrorKind, StreamChunk, Target, UpstreamError
from fluxway.errors import GatewayError

FIX = Path(__file__).parent.parent / "fixtures" / "azure"
TARGET = Target("az", "my-gpt4o")
CREDS = Credentials("azure-key-123")


def adapter(**kw: object) -> AzureAdapter:
    cfg = AzureSettings(name="az", type="azure", base_url="https://myres.openai.azure.com", api_keys=("k",), **kw)
    return AzureAdapter(cfg)


def chat(stream: bool = False, **body: object) -> CanonicalRequest:
    b = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], **body}
    if stream:
        b["stream"] = True
    return CanonicalRequest(Endpoint.CHAT, "smart", b, stream=stream)


def test_registry_creates_azure_adapter() -> None:
    cfg = AzureSettings(name="az", type="azure", base_url="https://myres.openai.azure.com", api_keys=("k",))
    assert isinstance(create_adapter(cfg), AzureAdapter)


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [(Endpoint.CHAT, "chat/completions"), (Endpoint.COMPLETIONS, "completions"), (Endpoint.EMBEDDINGS, "embeddings")],
)
def test_deployment_urls(endpoint: Endpoint, path: str) -> None:
    req = CanonicalRequest(endpoint, "smart", {"model": "smart", "input": "x", "prompt": "x"})
    call = adapter().build(req, TARGET, CREDS)
    assert call.url == (
        f"https://myres.openai.azure.com/openai/deployments/my-gpt4o/{path}?api-version={DEFAULT_API_VERSION}"
    )
    assert call.method == "POST"


def test_api_key_header_not_bearer() -> None:
    call = adapter().build(chat(), TARGET, CREDS)
    assert call.headers["api-key"] == "azure-key-123"
    assert "authorization" not in {k.lower() for k in call.headers}
    assert call.headers["content-type"] == "application/json"


def test_configured_api_version_and_base_url_with_openai_suffix() -> None:
    cfg = AzureSettings(name="az", type="azure", base_url="https://myres.openai.azure.com/openai/",
                         api_keys=("k",), api_version="2025-01-01-preview")
    call = AzureAdapter(cfg).build(chat(), Target("az", "dep.v2_x-1"), CREDS)
    assert call.url == (
        "https://myres.openai.azure.com/openai/deployments/dep.v2_x-1/chat/completions"
        "?api-version=2025-01-01-preview"
    )


@pytest.mark.parametrize("name", ["dep/with space", "dep/x", "..", "a?b", "a#b", "a b", "a\x01b", "a%2Fb"])
def test_deployment_names_that_would_change_the_url_are_refused(name: str) -> None:
    cfg = AzureSettings(name="az", type="azure", base_url="https://myres.openai.azure.com", api_keys=("k",))
    with pytest.raises(GatewayError) as info:
        AzureAdapter(cfg).build(chat(), Target("az", name), CREDS)
    assert (info.value.status, info.value.code, info.value.param) == (400, "invalid_model", "model")


def test_deployment_route_body_has_no_model_but_keeps_params() -> None:
    call = adapter().build(chat(temperature=0.2, tools=[{"type": "function", "function": {"name": "f"}}]),
                           TARGET, CREDS)
    assert call.body is not None
    body = orjson.loads(call.body)
    assert "model" not in body
    assert body["temperature"] == 0.2
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["tools"][0]["function"]["name"] == "f"


def test_v1_route_puts_model_in_body() -> None:
    call = adapter(api_version="v1").build(chat(), TARGET, CREDS)
    assert call.url == "https://myres.openai.azure.com/openai/v1/chat/completions"
    assert call.body is not None
    assert orjson.loads(call.body)["model"] == "my-gpt4o"
    cfg = AzureSettings(name="az", type="azure", base_url="https://x.openai.azure.com/openai/v1", api_keys=("k",),
                         api_version="v1")
    emb = CanonicalRequest(Endpoint.EMBEDDINGS, "e", {"model": "e", "input": "x"})
    assert AzureAdapter(cfg).build(emb, TARGET, CREDS).url == "https://x.openai.azure.com/openai/v1/embeddings"


def test_stream_asks_for_usage_and_sse() -> None:
    call = adapter().build(chat(stream=True), TARGET, CREDS)
    assert call.body is not None
    assert orjson.loads(call.body)["stream_options"] == {"include_usage": True}
    assert call.headers["accept"] == "text/event-stream"


def test_unsupported_fields_dropped() -> None:
    thinking_turn = {"role": "assistant", "content": "ok",
                     "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]}
    req = chat(web_search_options={}, top_k=5, thinking={"type": "enabled", "budget_tokens": 1024},
               messages=[{"role": "user", "content": "a"}, thinking_turn, {"role": "user", "content": "b"}])
    call = adapter().build(req, TARGET, CREDS)
    assert call.body is not None
    body = orjson.loads(call.body)
    assert not {"web_search_options", "top_k", "thinking"} & set(body)
    assert "thinking_blocks" not in body["messages"][1]
    seeded = adapter(drop_params=("seed",)).build(chat(seed=1, temperature=0), TARGET, CREDS)
    assert seeded.body is not None and "seed" not in orjson.loads(seeded.body)


def test_parse_fixture_response() -> None:
    raw = (FIX / "chat_response.json").read_bytes()
    resp = adapter().parse(chat(), TARGET, 200, {}, raw)
    assert resp.body["choices"][0]["message"]["content"].startswith("Ahoy matey!")
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (33, 557)


def test_finish_reason_content_filter_is_kept() -> None:
    data = orjson.loads((FIX / "chat_response.json").read_bytes())
    data["choices"][0]["finish_reason"] = "content_filter"
    data["choices"][0]["message"]["content"] = None
    resp = adapter().parse(chat(), TARGET, 200, {}, orjson.dumps(data))
    assert resp.body["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize("name", ["content_filter_error.json", "content_filter_error_inference.json"])
def test_content_filter_errors(name: str) -> None:
    with pytest.raises(UpstreamError) as exc:
        adapter().parse(chat(), TARGET, 400, {}, (FIX / name).read_bytes())
    assert exc.value.kind is ErrorKind.CONTENT_FILTER
    assert exc.value.status == 400
    assert "filtered" in exc.value.message


def test_innererror_alone_is_content_filter() -> None:
    body = orjson.dumps({"error": {"message": "blocked", "code": "BadRequest",
                                   "innererror": {"code": "ResponsibleAIPolicyViolation"}}})
    assert adapter().classify_error(400, {}, body).kind is ErrorKind.CONTENT_FILTER


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, (FIX / "rate_limit_error.json").read_bytes(), ErrorKind.RATE_LIMITED),
        (401, b'{"error":{"code":"401","message":"Access denied due to invalid subscription key"}}', ErrorKind.AUTH),
        (404, b'{"error":{"code":"DeploymentNotFound","message":"The API deployment does not exist"}}',
         ErrorKind.NOT_FOUND),
        (400, b'{"error":{"code":"context_length_exceeded","message":"maximum context length is 128000"}}',
         ErrorKind.CONTEXT_LENGTH),
        (400, b'{"error":{"code":"invalid_value","message":"bad temperature"}}', ErrorKind.BAD_REQUEST),
        (500, b"oops", ErrorKind.UPSTREAM_5XX),
    ],
)
def test_error_classification(status: int, body: bytes, kind: ErrorKind) -> None:
    err = adapter().classify_error(status, {"retry-after": "6"}, body)
    assert err.kind is kind
    assert err.retry_after == 6.0


def _decode(data: bytes, cut: int) -> list[StreamChunk]:
    dec = adapter().stream_decoder(chat(stream=True), TARGET)
    out = dec.feed(data[:cut]) + dec.feed(data[cut:])
    return out + dec.close()


def test_stream_fixture_drops_prompt_filter_chunk_at_every_split() -> None:
    data = (FIX / "chat_stream.sse").read_bytes()
    expected = _decode(data, len(data))
    assert [c.data["choices"][0]["delta"].get("content") for c in expected[:3]] == ["", "Ahoy", " matey!"]
    assert expected[3].data["choices"][0]["finish_reason"] == "stop"
    assert expected[4].data["choices"] == [] and expected[4].data["usage"]["total_tokens"] == 15
    assert len(expected) == 5
    for cut in range(0, len(data), 7):
        assert [c.data for c in _decode(data, cut)] == [c.data for c in expected]


def test_stream_error_event_content_filter() -> None:
    dec = adapter().stream_decoder(chat(stream=True), TARGET)
    ev = b'data: {"error":{"code":"content_filter","message":"The response was filtered"}}\n\n'
    with pytest.raises(UpstreamError) as exc:
        dec.feed(ev)
    assert exc.value.kind is ErrorKind.CONTENT_FILTER


def test_stream_cut_short_raises() -> None:
    data = (FIX / "chat_stream.sse").read_bytes()
    dec = adapter().stream_decoder(chat(stream=True), TARGET)
    dec.feed(data[: data.index(b"Ahoy") + 200])
    with pytest.raises(UpstreamError) as exc:
        dec.close()
    assert exc.value.kind is ErrorKind.PROTOCOL


def test_missing_base_url_is_an_error() -> None:
    with pytest.raises(ValueError, match="base_url"):
        AzureAdapter(AzureSettings(name="az", type="azure", api_keys=("k",)))


def test_thinking_blocks_are_dropped() -> None:
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "thinking_blocks": [
        {"type": "redacted_thinking", "data": "Zm9v"}]}]
    sent = orjson.loads(adapter().build(chat(messages=messages), TARGET, CREDS).body or b"")
    assert sent["messages"] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
