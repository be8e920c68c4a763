"""The Vertex adapter: one provider, two publishers (see the package docstring)."""

from __future__ import annotations

from urllib.parse import quote

from fluxway.adapters.anthropic.errors import error_from_anthropic
from fluxway.adapters.anthropic.request import build_body as anthropic_body
from fluxway.adapters.anthropic.request import uses_json_tool
from fluxway.adapters.anthropic.response import response_from_anthropic
from fluxway.adapters.anthropic.stream import AnthropicStreamDecoder
from fluxway.adapters.base import Headers, StreamDecoder, dumps, loads_object
from fluxway.adapters.gemini.errors import error_from_gemini
from fluxway.adapters.gemini.request import build_body as gemini_body
from fluxway.adapters.gemini.response import response_from_gemini
from fluxway.adapters.gemini.stream import GeminiStreamDecoder
from fluxway.adapters.names import check_name
from fluxway.adapters.settings import VertexSettings, is_claude
from fluxway.adapters.toolkit import SHAPE_ERRORS, bad_request, json_or_none, odd_shape
from fluxway.adapters.vertex.embeddings import embeddings_from_predict, predict_body
from fluxway.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    Credentials,
    Endpoint,
    ErrorKind,
    HttpCall,
    Target,
    UpstreamError,
)

# Anthropic's Messages version on Vertex, sent in the body (Anthropic's "Claude on Vertex AI").
ANTHROPIC_VERSION = "vertex-2023-10-16"


def default_base_url(location: str) -> str:
    """``https://{location}-aiplatform.googleapis.com``; the ``global`` location has no prefix."""
    host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    return f"https://{host}"


class VertexAdapter:
    """Gemini (generateContent) and Claude (rawPredict) models on Vertex AI."""

    def __init__(self, cfg: VertexSettings) -> None:
        if not cfg.project or not cfg.location:
            raise ValueError(f"provider '{cfg.name}' (vertex) needs a project and a location")
        self.cfg = cfg
        base = (cfg.base_url or default_base_url(cfg.location)).rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        self.root = f"{base}/v1/projects/{cfg.project}/locations/{cfg.location}/publishers"
        self.static_headers = {"content-type": "application/json", **cfg.headers}

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint in (Endpoint.CHAT, Endpoint.EMBEDDINGS)

    def url(self, req: CanonicalRequest, target: Target) -> str:
        check_name(target.model)  # 400 invalid_model for '/', '..', '?', '#', controls
        model = quote(target.model, safe="@")  # `claude-sonnet-4-5@20250929` as Google documents it
        if is_claude(target.model):
            return f"{self.root}/anthropic/models/{model}:" + ("streamRawPredict" if req.stream else "rawPredict")
        if req.endpoint is Endpoint.EMBEDDINGS:
            return f"{self.root}/google/models/{model}:predict"
        return f"{self.root}/google/models/{model}:" + (
            "streamGenerateContent?alt=sse" if req.stream else "generateContent"
        )

    def build(self, req: CanonicalRequest, target: Target, creds: Credentials) -> HttpCall:
        claude = is_claude(target.model)
        if req.endpoint is not Endpoint.CHAT and not (req.endpoint is Endpoint.EMBEDDINGS and not claude):
            raise bad_request(f"vertex does not serve the {req.endpoint.value} endpoint for {target.model}")
        headers = dict(self.static_headers)
        # A flow's token (service account), else the configured one; an api_key is taken as a token too.
        token = creds.bearer_token or self.cfg.access_token or creds.api_key
        if not token:
            raise UpstreamError(ErrorKind.AUTH, "vertex provider has neither a service-account token nor access_token")
        headers["authorization"] = "Bearer " + token
        if req.stream:
            headers["accept"] = "text/event-stream"
        try:
            if req.endpoint is Endpoint.EMBEDDINGS:
                payload = predict_body(req.body)
            elif claude:
                payload = anthropic_body(req.body, target.model, req.stream)
                del payload["model"]  # the URL names it
                payload["anthropic_version"] = ANTHROPIC_VERSION
            else:
                payload = gemini_body(req.body, target.model)
        except SHAPE_ERRORS as exc:
            raise bad_request(f"the request cannot be translated for vertex ({exc!r:.200})") from None
        return HttpCall("POST", self.url(req, target), headers, dumps(payload))

    def parse(
        self, req: CanonicalRequest, target: Target, status: int, headers: Headers, body: bytes
    ) -> CanonicalResponse:
        if status >= 400:
            raise self.classify_error(status, headers, body)
        data = loads_object(body)
        if isinstance(data.get("error"), dict):
            raise self.classify_error(502, headers, body)
        try:
            if req.endpoint is Endpoint.EMBEDDINGS:
                out, usage = embeddings_from_predict(data, target.model, req.body)
            elif is_claude(target.model):
                out, usage = response_from_anthropic(data, target.model, uses_json_tool(req.body, target.model))
            else:
                out, usage = response_from_gemini(data, target.model)
        except SHAPE_ERRORS as exc:
            raise odd_shape("vertex", "an answer", exc) from None
        return CanonicalResponse(out, usage)

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> StreamDecoder:
        if is_claude(target.model):
            return AnthropicStreamDecoder(
                target.model, uses_json_tool(req.body, target.model), self.cfg.max_event_bytes
            )
        return GeminiStreamDecoder(target.model, self.cfg.max_event_bytes)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        """Vertex answers in Google's error shape (``{"error": {"code", "status", "message"}}``)
        for both publishers; Anthropic's own (``{"type": "error"}``) can come from a Claude model."""
        data = json_or_none(body)
        if isinstance(data, dict) and data.get("type") == "error":
            return error_from_anthropic(status, headers, body)
        err = error_from_gemini(status, headers, body)
        if err.kind is ErrorKind.BAD_REQUEST and status in (401, 403):
            err.kind = ErrorKind.AUTH
        return err
