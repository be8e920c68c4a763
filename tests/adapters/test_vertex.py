"""Vertex AI end to end: official openai and anthropic SDKs -> the gateway -> a local Vertex that
checks the URL, the bearer token and the body, with tokens from a local Google token endpoint that
verifies the service account's RS256 JWT (tests/support/token_servers.py).

Wire details: Google Cloud's REST reference (projects.locations.publishers.models.generateContent /
streamGenerateContent / rawPredict / streamRawPredict / predict), Anthropic's "Claude on Vertex AI"
and anthropics/anthropic-sdk-python ``src/anthropic/lib/vertex/_client.py`` (the ``global`` host,
``anthropic_version: vertex-2023-10-16`` in the body, no ``model``). Answers: tests/fixtures/vertex/SOURCES.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from fluxway.adapters.registry import create_adapter
from fluxway.adapters.settings import VertexSettings
from fluxway.adapters.vertex import VertexAdapter
from fluxway.canonical import CanonicalRequest, Credentials, Endpoint, ErrorKind, Target, UpstreamError
from fluxway.config import ConfigError, parse
from fluxway.redact import Redactor
from tests.support.gateway import run_gateway
from tests.support.replies import json_reply, sse_events, sse_reply
from tests.support.token_servers import GoogleTokenEndpoint, service_account
from tests.support.upstream import FakeUpstream

FIX = Path(__file__).parent.parent / "fixtures"
PROJECT, LOCATION = "test-project", "europe-west4"
ROOT = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"
GEMINI, CLAUDE, EMBED = "gemini-2.5-flash", "claude-sonnet-4-5@20250929", "text-embedding-005"


def _vertex(issued: list[str]) -> Any:
    """A handler factory: answers ``file`` when the bearer is the latest issued token."""

    def answering(file: str, stream: bool = False) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not issued or request.headers.get("authorization") != "Bearer " + issued[-1]:
                return json_reply(json.loads((FIX / "vertex/error_unauthenticated.json").read_text()), 401)
            data = (FIX / file).read_bytes()
            if stream:
                return await sse_reply(request, sse_events(data))
            return web.Response(body=data, content_type="application/json")

        return handle

    return answering


async def test_service_account_through_both_sdks() -> None:
    async with FakeUpstream() as tokens, FakeUpstream() as vertex:
        info, public = service_account(tokens.url + "/token")
        google = GoogleTokenEndpoint(public, info["client_email"], tokens.url + "/token")
        tokens.route("POST", "/token", google.handle)
        answer = _vertex(google.issued)
        vertex.route("POST", f"{ROOT}/google/models/{GEMINI}:generateContent", answer("gemini/response_text.json"))
        vertex.route("POST", f"{ROOT}/google/models/{GEMINI}:streamGenerateContent",
                     answer("gemini/stream_text.sse", stream=True))
        vertex.route("POST", f"{ROOT}/anthropic/models/{CLAUDE}:rawPredict", answer("anthropic/response_text.json"))
        vertex.route("POST", f"{ROOT}/anthropic/models/{CLAUDE}:streamRawPredict",
                     answer("anthropic/stream_text.sse", stream=True))
        vertex.route("POST", f"{ROOT}/google/models/{EMBED}:predict", answer("vertex/predict_embeddings.json"))
        config = {
            "providers": [{"name": "vx", "type": "vertex", "base_url": vertex.url, "location": LOCATION,
                           "credentials": "${SA_JSON}"}],  # project: the key's project_id
            "models": [{"name": "gem", "targets": [{"provider": "vx", "model": GEMINI}]},
                       {"name": "claude", "targets": [{"provider": "vx", "model": CLAUDE}]},
                       {"name": "emb", "targets": [{"provider": "vx", "model": EMBED}]}],
        }
        async with run_gateway(config, env={"SA_JSON": json.dumps(info)}) as gw:
            oa = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            resp = await oa.chat.completions.create(model="gem", messages=[{"role": "user", "content": "Say hello"}])
            assert resp.choices[0].message.content == "Hello! How can I help you today?"
            stream = await oa.chat.completions.create(model="gem", messages=[{"role": "user", "content": "hi"}],
                                                      stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "Hello! How can I help you today?"
            emb = await oa.embeddings.create(model="emb", input=["hello world", "bye"])
            assert emb.data[0].embedding == pytest.approx([0.0123, -0.0456, 0.0789], rel=1e-6)  # float32 base64
            assert emb.data[1].embedding == pytest.approx([-0.011, 0.022, -0.033], rel=1e-6)
            assert emb.usage.prompt_tokens == 7

            an = anthropic.AsyncAnthropic(base_url=gw.url, api_key="x", max_retries=0)
            msg = await an.messages.create(model="claude", max_tokens=64,
                                           messages=[{"role": "user", "content": "Say hello"}])
            assert msg.content[0].type == "text" and msg.content[0].text == "Hello! How can I help you today?"
            async with an.messages.stream(model="claude", max_tokens=64,
                                          messages=[{"role": "user", "content": "hi"}]) as s:
                streamed = "".join([t async for t in s.text_stream])
            assert streamed == "Hello! How can I help you today?"
        assert len(google.issued) == 1  # one token served every call
        by_path = {r.path.rsplit(":", 1)[-1]: r for r in vertex.requests}
        gemini_body = by_path["generateContent"].json()
        assert gemini_body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
        assert by_path["streamGenerateContent"].query == {"alt": "sse"}
        claude_body = by_path["rawPredict"].json()
        assert claude_body["anthropic_version"] == "vertex-2023-10-16"
        assert "model" not in claude_body and claude_body["max_tokens"] == 64
        assert by_path["rawPredict"].raw_path.endswith("/models/claude-sonnet-4-5@20250929:rawPredict")
        streamed_body = by_path["streamRawPredict"].json()
        assert streamed_body["stream"] is True and "model" not in streamed_body
        assert by_path["predict"].json() == {"instances": [{"content": "hello world"}, {"content": "bye"}]}


def _settings(**kw: Any) -> VertexSettings:
    cfg: dict[str, Any] = {"name": "vx", "type": "vertex", "project": "p", "location": "us-east5",
                           "access_token": "ya29.static", **kw}
    return VertexSettings.model_validate(cfg)


def test_urls_per_location_and_publisher() -> None:
    req = CanonicalRequest(Endpoint.CHAT, "m", {"messages": [{"role": "user", "content": "hi"}]})
    regional = VertexAdapter(_settings())
    call = regional.build(req, Target("vx", "claude-opus-4-1@20250805"), Credentials(None))
    assert call.url == ("https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/"
                        "anthropic/models/claude-opus-4-1@20250805:rawPredict")
    assert call.headers["authorization"] == "Bearer ya29.static"
    worldwide = VertexAdapter(_settings(location="global"))
    call = worldwide.build(req, Target("vx", "gemini-2.5-pro"), Credentials(None, {"bearer_token": "ya29.flow"}))
    assert call.url == ("https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google/"
                        "models/gemini-2.5-pro:generateContent")
    assert call.headers["authorization"] == "Bearer ya29.flow"  # the flow's token wins
    with pytest.raises(Exception, match="invalid model name"):
        regional.build(req, Target("vx", "gemini/../../x"), Credentials(None))
    emb = CanonicalRequest(Endpoint.EMBEDDINGS, "m", {"input": "x"})
    with pytest.raises(UpstreamError, match="does not serve the embeddings endpoint"):
        regional.build(emb, Target("vx", "claude-opus-4-1@20250805"), Credentials(None))


def test_errors_in_google_and_anthropic_shapes() -> None:
    adapter = create_adapter(_settings())
    unauth = (FIX / "vertex/error_unauthenticated.json").read_bytes()
    assert adapter.classify_error(401, {}, unauth).kind is ErrorKind.AUTH
    quota = (FIX / "vertex/error_quota.json").read_bytes()
    assert adapter.classify_error(429, {}, quota).kind is ErrorKind.RATE_LIMITED
    overloaded = (FIX / "anthropic/error_overloaded.json").read_bytes()
    assert adapter.classify_error(529, {}, overloaded).kind is ErrorKind.OVERLOADED


def test_config_is_strict_and_names_the_path(tmp_path: Path) -> None:
    def problems(p: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
        with pytest.raises(ConfigError) as exc:
            parse({"providers": [{"name": "vx", "type": "vertex", **p}]}, env=env or {})
        return exc.value.problems

    found = problems({"project": "p", "location": "us-central1"})
    assert any(f.startswith("providers[0].credentials: vertex needs a service-account key") for f in found)
    assert problems({"access_token": "t", "location": "global"}) == [
        "providers[0].project: vertex needs the Google Cloud project (or GOOGLE_CLOUD_PROJECT)"]
    assert any("cannot read the service-account file" in f
               for f in problems({"project": "p", "location": "global", "credentials": str(tmp_path / "no.json")}))
    assert any(f.startswith("providers[0].api_keys:")
               for f in problems({"project": "p", "location": "global", "access_token": "t", "api_keys": ["k"]}))
    # the standard variables fill what the config leaves out; the key file's project_id is the default
    info, _ = service_account("https://oauth2.googleapis.com/token")
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    cfg = parse({"providers": [{"name": "vx", "type": "vertex"}]},
                env={"GOOGLE_APPLICATION_CREDENTIALS": str(path), "GOOGLE_CLOUD_LOCATION": "global"})
    p = cfg.providers[0]
    assert isinstance(p, VertexSettings)
    assert (p.project, p.location, p.credentials) == ("test-project", "global", str(path))
    assert p.credential_flow() == "fluxway.credentials.google:source_for"
    # an inline key and its private key are scrubbed wherever they could show
    inline = parse({"providers": [{"name": "vx", "type": "vertex", "location": "global",
                                   "credentials": json.dumps(info)}]}, env={})
    redactor = Redactor.from_config(inline)
    assert info["private_key"] not in redactor.text("oops: " + info["private_key"])
