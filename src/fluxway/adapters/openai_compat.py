"""OpenAI and every OpenAI-compatible vendor (the vendors differ only by a row in ``presets``)."""

from __future__ import annotations

from typing import Any

from fluxway.adapters.base import Headers, dumps, loads_object, with_query
from fluxway.adapters.presets import PRESETS, Preset
from fluxway.adapters.settings import ProviderSettings
from fluxway.adapters.toolkit import OPENAI_PATHS, error_from_openai_body, stream_event
from fluxway.canonical import (
    SURFACE_PATHS,
    CanonicalRequest,
    CanonicalResponse,
    Credentials,
    Endpoint,
    ErrorKind,
    HttpCall,
    StreamChunk,
    Target,
    UpstreamError,
    Usage,
)
from fluxway.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder


class OpenAICompatAdapter:
    """Speaks the OpenAI wire format to OpenAI itself or any compatible server."""

    def __init__(self, cfg: ProviderSettings, preset: Preset | None = None) -> None:
        self.cfg = cfg
        self.preset = preset or PRESETS.get(cfg.type) or PRESETS["openai-compatible"]
        base = cfg.base_url or self.preset.base_url
        if not base:
            raise ValueError(f"provider '{cfg.name}' needs a base_url")
        self.base_url = base.rstrip("/")
        self.drop = self.preset.drop | frozenset(cfg.drop_params)
        self.rename = self.preset.rename
        self.static_headers = {"content-type": "application/json", **cfg.headers}

    # -- building -----------------------------------------------------------------------------

    def supports(self, endpoint: Endpoint) -> bool:
        if endpoint is Endpoint.EMBEDDINGS:
            return self.preset.embeddings
        if endpoint is Endpoint.COMPLETIONS:
            return self.preset.completions
        if endpoint is Endpoint.CHAT:
            return self.preset.chat
        return endpoint in self.preset.surface

    def surface_url(self, endpoint: Endpoint, target: Target, suffix: str) -> str:
        return self.base_url + SURFACE_PATHS[endpoint] + suffix

    def surface_call(
        self,
        endpoint: Endpoint,
        target: Target,
        creds: Credentials,
        method: str,
        suffix: str = "",
        query: str = "",
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> HttpCall:
        headers = {k: v for k, v in self.static_headers.items() if k != "content-type"}
        headers.update(self.auth_headers(creds))
        if content_type:
            headers["content-type"] = content_type
        return HttpCall(method, with_query(self.surface_url(endpoint, target, suffix), query), headers, body)

    def url(self, endpoint: Endpoint, target: Target) -> str:
        return self.base_url + OPENAI_PATHS[endpoint]

    def auth_headers(self, creds: Credentials) -> dict[str, str]:
        if creds.api_key and self.preset.auth == "bearer":
            return {"authorization": "Bearer " + creds.api_key}
        return {}

    def transform_body(self, req: CanonicalRequest, target: Target) -> dict[str, Any]:
        body = dict(req.body)
        body["model"] = target.model
        messages = body.get("messages")
        if isinstance(messages, list) and any(isinstance(m, dict) and "thinking_blocks" in m for m in messages):
            # signed thinking (for Anthropic upstreams) is an unknown field to OpenAI-shaped servers
            body["messages"] = [_without_thinking(m) for m in messages]
        drop = self.drop
        if drop:
            for name in drop.intersection(body):
                del body[name]
        for src, dst in self.rename:
            if src in body:
                value = body.pop(src)
                body.setdefault(dst, value)
        if req.stream and self.preset.stream_usage and req.endpoint is not Endpoint.EMBEDDINGS:
            opts = body.get("stream_options")
            if not (isinstance(opts, dict) and opts.get("include_usage")):
                body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        return body

    def build(self, req: CanonicalRequest, target: Target, creds: Credentials) -> HttpCall:
        headers = {**self.static_headers, **self.auth_headers(creds)}
        if req.stream:
            headers["accept"] = "text/event-stream"
        return HttpCall("POST", self.url(req.endpoint, target), headers, dumps(self.transform_body(req, target)))

    # -- parsing ------------------------------------------------------------------------------

    def parse(
        self, req: CanonicalRequest, target: Target, status: int, headers: Headers, body: bytes
    ) -> CanonicalResponse:
        if status >= 400:
            raise self.classify_error(status, headers, body)
        data = loads_object(body)
        if "error" in data and data.get("error"):
            raise error_from_openai_body(502, headers, body)
        if req.endpoint is Endpoint.CHAT and not isinstance(data.get("choices"), list):
            raise UpstreamError(ErrorKind.PROTOCOL, "upstream response has no 'choices' list")
        if req.endpoint is Endpoint.EMBEDDINGS and not isinstance(data.get("data"), list):
            raise UpstreamError(ErrorKind.PROTOCOL, "upstream embeddings response has no 'data' list")
        return CanonicalResponse(data, Usage.from_openai(data.get("usage")), raw=body)

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self.cfg.max_event_bytes)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        return error_from_openai_body(status, headers, body)


class OpenAIStreamDecoder:
    """OpenAI SSE: ``data: {chunk}`` events ending with ``data: [DONE]``."""

    __slots__ = ("_done", "_finished", "_sse")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._sse = SSEDecoder(max_event_bytes)
        self._done = False
        self._finished = False

    def feed(self, data: bytes) -> list[StreamChunk]:
        return self._events(self._sse.feed(data))

    def close(self) -> list[StreamChunk]:
        out = self._events(self._sse.flush())
        if not self._done and not self._finished:
            raise UpstreamError(ErrorKind.PROTOCOL, "upstream stream ended before its last event")
        return out

    def _events(self, events: list[Any]) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for ev in events:
            text: str = ev.data
            if not text or self._done:
                continue
            if text == "[DONE]":
                self._done = True
                continue
            data = stream_event(text, "upstream")
            raw = text.encode()
            if data.get("error"):
                err = error_from_openai_body(500, {}, raw)
                err.kind = _stream_error_kind(data["error"], err.kind)
                raise err
            choices = data.get("choices")
            if choices:
                for c in choices:
                    if isinstance(c, dict) and c.get("finish_reason"):
                        self._finished = True
            out.append(StreamChunk(data, raw))
        return out


def _without_thinking(message: Any) -> Any:
    if isinstance(message, dict) and "thinking_blocks" in message:
        return {k: v for k, v in message.items() if k != "thinking_blocks"}
    return message


def _stream_error_kind(err: Any, default: ErrorKind) -> ErrorKind:
    if isinstance(err, dict):
        code = str(err.get("code") or err.get("type") or "").lower()
        if "rate" in code:
            return ErrorKind.RATE_LIMITED
        if "overload" in code:
            return ErrorKind.OVERLOADED
        if "context" in code:
            return ErrorKind.CONTEXT_LENGTH
    return default
