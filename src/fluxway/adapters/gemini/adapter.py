"""The Gemini adapter: generateContent, streamGenerateContent and batchEmbedContents."""

from __future__ import annotations

import re

from fluxway.adapters.base import Headers, dumps, loads_object
from fluxway.adapters.gemini.embeddings import build_embeddings, embeddings_from_gemini
from fluxway.adapters.gemini.errors import error_from_gemini
from fluxway.adapters.gemini.models import model_url_path
from fluxway.adapters.gemini.request import build_body
from fluxway.adapters.gemini.response import response_from_gemini
from fluxway.adapters.gemini.stream import GeminiStreamDecoder
from fluxway.adapters.settings import GeminiSettings
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

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_VERSION = "v1beta"
_VERSIONED = re.compile(r"/v\d+(?:alpha|beta)?\d*$")


class GeminiAdapter:
    """Speaks the Gemini Developer API (Google AI Studio keys)."""

    def __init__(self, cfg: GeminiSettings) -> None:
        self.cfg = cfg
        base = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.root = base if _VERSIONED.search(base) else f"{base}/{cfg.api_version or DEFAULT_VERSION}"
        self.static_headers = {"content-type": "application/json", **cfg.headers}

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint in (Endpoint.CHAT, Endpoint.EMBEDDINGS)

    def url(self, req: CanonicalRequest, target: Target) -> str:
        path = f"{self.root}/{model_url_path(target.model)}"
        if req.endpoint is Endpoint.EMBEDDINGS:
            return path + ":batchEmbedContents"
        return path + (":streamGenerateContent?alt=sse" if req.stream else ":generateContent")

    def build(self, req: CanonicalRequest, target: Target, creds: Credentials) -> HttpCall:
        headers = dict(self.static_headers)
        if creds.api_key:
            headers["x-goog-api-key"] = creds.api_key
        if req.endpoint not in (Endpoint.CHAT, Endpoint.EMBEDDINGS):
            raise bad_request(f"gemini does not serve the {req.endpoint.value} endpoint")
        if req.stream and req.endpoint is Endpoint.CHAT:
            headers["accept"] = "text/event-stream"
        try:
            if req.endpoint is Endpoint.EMBEDDINGS:
                payload = dumps(build_embeddings(req.body, target.model))
            else:
                payload = dumps(build_body(req.body, target.model))
        except SHAPE_ERRORS as exc:
            raise bad_request(f"the request cannot be translated for gemini ({exc!r:.200})") from None
        return HttpCall("POST", self.url(req, target), headers, payload)

    def parse(
        self, req: CanonicalRequest, target: Target, status: int, headers: Headers, body: bytes
    ) -> CanonicalResponse:
        if status >= 400:
            raise self.classify_error(status, headers, body)
        data = loads_object(body)
        if isinstance(data.get("error"), dict):
            raise error_from_gemini(502, headers, body)
        try:
            if req.endpoint is Endpoint.EMBEDDINGS:
                out, usage = embeddings_from_gemini(data, req, target.model)
            else:
                out, usage = response_from_gemini(data, target.model)
        except SHAPE_ERRORS as exc:
            raise odd_shape("gemini", "an answer", exc) from None
        return CanonicalResponse(out, usage)

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(target.model, self.cfg.max_event_bytes)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        return error_from_gemini(status, headers, body)
