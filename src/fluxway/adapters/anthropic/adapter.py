"""The Anthropic adapter: the Messages API (``POST /v1/messages``) behind the adapter seam."""

from __future__ import annotations

from fluxway.adapters.anthropic.errors import error_from_anthropic
from fluxway.adapters.anthropic.request import build_body, uses_json_tool
from fluxway.adapters.anthropic.response import response_from_anthropic
from fluxway.adapters.anthropic.stream import AnthropicStreamDecoder
from fluxway.adapters.base import Headers, dumps, loads_object
from fluxway.adapters.settings import AnthropicSettings
from fluxway.adapters.toolkit import SHAPE_ERRORS, bad_request, odd_shape
from fluxway.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    Credentials,
    Endpoint,
    HttpCall,
    Target,
    UpstreamError,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"


class AnthropicAdapter:
    """Speaks the Anthropic Messages API."""

    def __init__(self, cfg: AnthropicSettings) -> None:
        self.cfg = cfg
        base = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        self.url = base + "/v1/messages"
        self.static_headers = {
            "content-type": "application/json",
            "anthropic-version": cfg.api_version or DEFAULT_VERSION,
            **cfg.headers,
        }

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint is Endpoint.CHAT

    def build(self, req: CanonicalRequest, target: Target, creds: Credentials) -> HttpCall:
        if req.endpoint is not Endpoint.CHAT:
            raise bad_request(f"anthropic does not serve the {req.endpoint.value} endpoint")
        headers = dict(self.static_headers)
        if creds.api_key:
            headers["x-api-key"] = creds.api_key
        if req.stream:
            headers["accept"] = "text/event-stream"
        try:
            payload = dumps(build_body(req.body, target.model, req.stream))
        except SHAPE_ERRORS as exc:
            raise bad_request(f"the request cannot be translated for anthropic ({exc!r:.200})") from None
        return HttpCall("POST", self.url, headers, payload)

    def parse(
        self, req: CanonicalRequest, target: Target, status: int, headers: Headers, body: bytes
    ) -> CanonicalResponse:
        if status >= 400:
            raise self.classify_error(status, headers, body)
        data = loads_object(body)
        if data.get("type") == "error":
            raise error_from_anthropic(502, headers, body)
        try:
            out, usage = response_from_anthropic(data, target.model, uses_json_tool(req.body, target.model))
        except SHAPE_ERRORS as exc:
            raise odd_shape("anthropic", "an answer", exc) from None
        return CanonicalResponse(out, usage)

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(
            target.model, uses_json_tool(req.body, target.model), self.cfg.max_event_bytes
        )

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        return error_from_anthropic(status, headers, body)
