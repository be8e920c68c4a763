"""The OpenAI-compatible adapter and the vendor preset table (pure)."""

from __future__ import annotations

from urllib.parse import urlparse

import orjson
import pytest

from fluxway.adapters.openai_compat import OpenAICompatAdapter, OpenAIStreamDecoder
from fluxway.adapters.presets import PRESETS
from fluxway.adapters.registry import create_adapter, is_known_type, requires_api_key
from fluxway.adapters.settings import OpenAICompatSettings
from fluxway.canonical import CanonicalRequest, Credentials, Endpoint, ErrorKind, Target, UpstreamError

REQUIRED_VENDORS = {
    "openai", "mistral", "groq", "together", "deepseek", "xai", "fireworks", "openrouter", "perplexity",
    "cerebras", "ollama", "vllm", "lmstudio", "llamacpp",
}


def adapter(type_: str, **kw: object) -> OpenAICompatAdapter:
    keys = ("sk-1",) if requires_api_key(type_) else ()
    cfg = OpenAICompatSettings(name="p", type=type_, api_keys=keys, **kw)  # type: ignore[arg-type]
    a = create_adapter(cfg)
    assert isinstance(a, OpenAICompatAdapter)
    return a


def chat(body: dict[str, object], stream: bool = False) -> CanonicalRequest:
    full = {"model": "public", "messages": [{"role": "user", "content": "hi"}], **body}
    return CanonicalRequest(Endpoint.CHAT, "public", full, stream)


def test_table_covers_the_required_vendors() -> None:
    assert PRESETS.keys() >= REQUIRED_VENDORS
    for name in REQUIRED_VENDORS:
        assert is_known_type(name)
        url = PRESETS[name].base_url
        assert url is not None
        parsed = urlparse(url)
        local = parsed.hostname == "localhost"
        assert parsed.scheme == ("http" if local else "https"), name
        assert PRESETS[name].key_required is not local, name
    assert not is_known_type("opnai")


def test_build_replaces_model_and_keeps_everything_else() -> None:
    a = adapter("openai")
    body = {"temperature": 0.1, "tools": [{"type": "function", "function": {"name": "f"}}], "seed": 3}
    req = chat(body)
    call = a.build(req, Target("p", "gpt-4o"), Credentials("sk-1"))
    sent = orjson.loads(call.body or b"")
    assert sent == {**req.body, "model": "gpt-4o"}
    assert req.body["model"] == "public"  # the canonical body is never mutated
    assert call.url == "https://api.openai.com/v1/chat/completions"
    assert call.headers["authorization"] == "Bearer sk-1"


def test_presets_drop_and_rename() -> None:
    req = chat({"max_completion_tokens": 50, "seed": 7, "logit_bias": {"1": 2}, "user": "u", "top_k": 4})
    sent = orjson.loads(adapter("mistral").build(req, Target("p", "mistral-large"), Credentials("k")).body or b"")
    assert sent["max_tokens"] == 50 and "max_completion_tokens" not in sent
    assert sent["random_seed"] == 7 and "seed" not in sent
    assert "logit_bias" not in sent and "user" not in sent and "top_k" not in sent
    sent = orjson.loads(adapter("vllm").build(req, Target("p", "m"), Credentials(None)).body or b"")
    assert sent["top_k"] == 4 and sent["seed"] == 7


def test_config_drop_params_and_base_url_override() -> None:
    a = adapter("groq", base_url="http://127.0.0.1:9/openai/v1/", drop_params=("temperature",))
    call = a.build(chat({"temperature": 1}), Target("p", "llama"), Credentials("k"))
    assert call.url == "http://127.0.0.1:9/openai/v1/chat/completions"
    assert "temperature" not in orjson.loads(call.body or b"")


def test_keyless_local_server_sends_no_authorization() -> None:
    call = adapter("ollama").build(chat({}), Target("p", "llama3"), Credentials(None))
    assert "authorization" not in call.headers
    assert call.url == "http://localhost:11434/v1/chat/completions"


def test_streams_always_ask_for_usage() -> None:
    a = adapter("openai")
    sent = orjson.loads(a.build(chat({"stream": True}, stream=True), Target("p", "m"), Credentials("k")).body or b"")
    assert sent["stream_options"] == {"include_usage": True}
    req = chat({"stream": True, "stream_options": {"include_obfuscation": False}}, stream=True)
    sent = orjson.loads(a.build(req, Target("p", "m"), Credentials("k")).body or b"")
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_anthropic_only_fields_never_reach_openai() -> None:
    req = chat({"thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 3})
    req.body["messages"] = [{"role": "assistant", "content": "x", "thinking_blocks": [{"type": "thinking"}]}]
    sent = orjson.loads(adapter("openai").build(req, Target("p", "m"), Credentials("k")).body or b"")
    assert "thinking" not in sent and "top_k" not in sent
    assert sent["messages"] == [{"role": "assistant", "content": "x"}]


def test_thinking_blocks_of_an_openai_shaped_request_are_dropped() -> None:
    """A chat caller sending back an Anthropic model's signed thinking to a model served elsewhere."""
    req = chat({"reasoning_effort": "low"})
    req.body["messages"] = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "r",
         "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s", "index": 0}]},
    ]
    sent = orjson.loads(adapter("openai").build(req, Target("p", "m"), Credentials("k")).body or b"")
    assert all("thinking_blocks" not in m for m in sent["messages"])
    assert sent["messages"][1]["content"] == "a"


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retry_after"),
    [
        (429, {"error": {"message": "Rate limit reached", "type": "requests"}}, {"retry-after": "3"},
         ErrorKind.RATE_LIMITED, 3.0),
        (429, {"error": {"message": "slow"}}, {"retry-after-ms": "1500"}, ErrorKind.RATE_LIMITED, 1.5),
        (400, {"error": {"message": "This model's maximum context length is 8192 tokens",
                         "code": "context_length_exceeded"}}, {}, ErrorKind.CONTEXT_LENGTH, None),
        (400, {"error": {"message": "bad temperature", "param": "temperature"}}, {}, ErrorKind.BAD_REQUEST, None),
        (401, {"error": {"message": "Incorrect API key"}}, {}, ErrorKind.AUTH, None),
        (404, {"error": {"message": "model not found"}}, {}, ErrorKind.NOT_FOUND, None),
        (500, {"error": {"message": "boom"}}, {}, ErrorKind.UPSTREAM_5XX, None),
        (503, {"error": {"message": "The engine is currently overloaded"}}, {}, ErrorKind.OVERLOADED, None),
        (504, {}, {}, ErrorKind.TIMEOUT, None),
    ],
)
def test_error_classification(
    status: int, body: dict[str, object], headers: dict[str, str], kind: ErrorKind, retry_after: float | None
) -> None:
    err = adapter("openai").classify_error(status, headers, orjson.dumps(body))
    assert err.kind is kind
    assert err.status == status
    assert err.retry_after == retry_after


def test_non_json_error_body_keeps_its_text() -> None:
    err = adapter("openai").classify_error(502, {}, b"<html>Bad Gateway</html>")
    assert err.kind is ErrorKind.UPSTREAM_5XX and "Bad Gateway" in err.message


def test_parse_rejects_shapeless_success() -> None:
    a = adapter("openai")
    with pytest.raises(UpstreamError) as info:
        a.parse(chat({}), Target("p", "m"), 200, {}, b'{"id": "x"}')
    assert info.value.kind is ErrorKind.PROTOCOL
    with pytest.raises(UpstreamError):
        a.parse(chat({}), Target("p", "m"), 200, {}, b"not json")


def test_stream_decoder_done_cut_short_and_error_event() -> None:
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    dec = OpenAIStreamDecoder()
    assert [c.data["choices"][0]["delta"]["content"] for c in dec.feed(chunk)] == ["a"]
    assert dec.feed(b"data: [DONE]\n\n") == []
    assert dec.close() == []

    cut = OpenAIStreamDecoder()
    cut.feed(chunk)
    with pytest.raises(UpstreamError) as info:
        cut.close()
    assert info.value.kind is ErrorKind.PROTOCOL

    err = OpenAIStreamDecoder()
    with pytest.raises(UpstreamError) as info:
        err.feed(b'data: {"error": {"message": "overloaded", "type": "overloaded_error"}}\n\n')
    assert info.value.kind is ErrorKind.OVERLOADED


def test_finished_stream_without_done_is_complete() -> None:
    dec = OpenAIStreamDecoder()
    dec.feed(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    assert dec.close() == []
