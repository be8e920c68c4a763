"""Azure OpenAI: the OpenAI wire format behind per-deployment URLs and an ``api-key`` header.

Two routes:

* deployments (default): ``{base}/openai/deployments/{deployment}/chat/completions?api-version=V``,
  where the target's model is the deployment name and V is ``api_version`` (default below);
* v1 (``api_version: v1``): ``{base}/openai/v1/chat/completions`` with ``model`` in the body.

Auth: the ``api-key`` header, or ``Authorization: Bearer`` with a Microsoft Entra ID token
(``entra_id``: :mod:`fluxway.credentials.azure_client_secret` / ``azure_managed_identity``).

Content-filter refusals (``code: content_filter``, ``innererror.code:
ResponsibleAIPolicyViolation``) are classified as :attr:`ErrorKind.CONTENT_FILTER`; a
``finish_reason: content_filter`` in an answer is passed through as it is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fluxway.adapters.base import Headers
from fluxway.adapters.names import path_segment
from fluxway.adapters.openai_compat import OpenAICompatAdapter, OpenAIStreamDecoder
from fluxway.adapters.presets import OPENAI_SURFACE, Preset
from fluxway.adapters.settings import AzureSettings
from fluxway.adapters.toolkit import OPENAI_PATHS, error_from_openai_body
from fluxway.canonical import (
    SURFACE_PATHS,
    CanonicalRequest,
    Credentials,
    Endpoint,
    ErrorKind,
    StreamChunk,
    Target,
    UpstreamError,
)

# Pass-through endpoints served per deployment (the others, files and batches, per resource).
_PER_DEPLOYMENT = frozenset({Endpoint.IMAGES, Endpoint.SPEECH, Endpoint.TRANSCRIPTIONS})

DEFAULT_API_VERSION = "2024-10-21"
# Fields the Azure OpenAI data plane does not take (thinking and top_k come from Anthropic-shaped requests).
_DROP = frozenset({"web_search_options", "thinking", "top_k"})


def _resource_root(base_url: str) -> str:
    """``https://x.openai.azure.com`` from any of the forms users paste (with /openai or /openai/v1)."""
    base = base_url.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


class AzureAdapter(OpenAICompatAdapter):
    """Azure OpenAI Service (and Azure AI Foundry's OpenAI-compatible deployments)."""

    def __init__(self, cfg: AzureSettings) -> None:
        if not cfg.base_url:
            raise ValueError(f"provider '{cfg.name}' (azure) needs the resource's base_url")
        super().__init__(cfg, Preset(cfg.base_url, drop=_DROP, surface=OPENAI_SURFACE))
        self.base_url = _resource_root(cfg.base_url)
        self.api_version = cfg.api_version or DEFAULT_API_VERSION
        self.v1 = self.api_version.lower() == "v1"

    def url(self, endpoint: Endpoint, target: Target) -> str:
        if self.v1:
            return f"{self.base_url}/openai/v1{OPENAI_PATHS[endpoint]}"
        deployment = path_segment(target.model)  # 400 invalid_model for '/', '..', '?', '#', controls
        return (
            f"{self.base_url}/openai/deployments/{deployment}{OPENAI_PATHS[endpoint]}"
            f"?api-version={quote(self.api_version, safe='')}"
        )

    def surface_url(self, endpoint: Endpoint, target: Target, suffix: str) -> str:
        path = SURFACE_PATHS[endpoint] + suffix
        if self.v1:
            return f"{self.base_url}/openai/v1{path}"
        version = f"?api-version={quote(self.api_version, safe='')}"
        if endpoint in _PER_DEPLOYMENT:
            return f"{self.base_url}/openai/deployments/{path_segment(target.model)}{path}{version}"
        return f"{self.base_url}/openai{path}{version}"

    def auth_headers(self, creds: Credentials) -> dict[str, str]:
        if creds.bearer_token:  # an Entra ID token (entra_id)
            return {"authorization": "Bearer " + creds.bearer_token}
        return {"api-key": creds.api_key} if creds.api_key else {}

    def transform_body(self, req: CanonicalRequest, target: Target) -> dict[str, Any]:
        body = super().transform_body(req, target)
        if not self.v1:
            # The deployment in the URL names the model; the field is redundant there.
            body.pop("model", None)
        return body

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> AzureStreamDecoder:
        return AzureStreamDecoder(self.cfg.max_event_bytes)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        err = error_from_openai_body(status, headers, body)
        if _is_content_filter(err.body):
            err.kind = ErrorKind.CONTENT_FILTER
        return err


def _is_content_filter(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    err = body.get("error", body)
    if not isinstance(err, dict):
        return False
    if str(err.get("code") or "").lower() == "content_filter":
        return True
    inner = err.get("innererror") or err.get("inner_error")
    return isinstance(inner, dict) and (
        inner.get("code") == "ResponsibleAIPolicyViolation" or "content_filter_result" in inner
    )


class AzureStreamDecoder(OpenAIStreamDecoder):
    """OpenAI SSE, minus Azure's leading ``prompt_filter_results`` chunk (no choices, no usage)."""

    __slots__ = ()

    def _events(self, events: list[Any]) -> list[StreamChunk]:
        try:
            chunks = super()._events(events)
        except UpstreamError as err:
            if _is_content_filter(err.body):
                err.kind = ErrorKind.CONTENT_FILTER
            raise
        return [c for c in chunks if c.data.get("choices") or c.data.get("usage")]
