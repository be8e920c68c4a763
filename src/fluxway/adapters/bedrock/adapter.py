"""The Bedrock adapter: Converse / ConverseStream for chat, InvokeModel for embeddings.

* Chat: ``POST {base}/model/{modelId}/converse`` (JSON) or ``/converse-stream`` (the AWS binary
  event stream, decoded by :mod:`fluxway.adapters.eventstream`).
* Embeddings: ``POST {base}/model/{modelId}/invoke``.
* Auth: a Bedrock API key (``api_keys``) as ``Authorization: Bearer``, else SigV4 (service
  ``bedrock``, :mod:`fluxway.adapters.aws_sigv4`) with the provider's AWS credentials. The signing
  time comes from ``clock``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from fluxway.adapters.aws_sigv4 import AwsCredentials, sign
from fluxway.adapters.base import Headers, dumps, loads_object
from fluxway.adapters.bedrock.embeddings import embed_body, embeddings_from_bedrock
from fluxway.adapters.bedrock.errors import bedrock_error
from fluxway.adapters.bedrock.request import converse_body, json_mode_of
from fluxway.adapters.bedrock.response import response_from_converse
from fluxway.adapters.bedrock.stream import BedrockStreamDecoder
from fluxway.adapters.names import opaque_segment
from fluxway.adapters.settings import BedrockSettings
from fluxway.adapters.toolkit import bad_request
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

SERVICE = "bedrock"
EVENTSTREAM = "application/vnd.amazon.eventstream"


class BedrockAdapter:
    """Amazon Bedrock Runtime (Converse, ConverseStream, InvokeModel for embeddings)."""

    def __init__(self, cfg: BedrockSettings, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.region = cfg.region or "us-east-1"
        self.base_url = (cfg.base_url or f"https://bedrock-runtime.{self.region}.amazonaws.com").rstrip("/")
        self.aws = (
            AwsCredentials(cfg.aws_access_key_id, cfg.aws_secret_access_key, cfg.aws_session_token)
            if cfg.aws_access_key_id and cfg.aws_secret_access_key
            else None
        )
        self.drop = frozenset(cfg.drop_params)

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint in (Endpoint.CHAT, Endpoint.EMBEDDINGS)

    def _credentials(self, creds: Credentials) -> AwsCredentials | None:
        extra = creds.extra
        if extra.get("aws_access_key_id") and extra.get("aws_secret_access_key"):
            return AwsCredentials(extra["aws_access_key_id"], extra["aws_secret_access_key"],
                                  extra.get("aws_session_token"))
        return self.aws

    def build(self, req: CanonicalRequest, target: Target, creds: Credentials) -> HttpCall:
        body = {k: v for k, v in req.body.items() if k not in self.drop} if self.drop else req.body
        # ':' stays as it is: HTTP clients (yarl) normalise %3A back to ':' in paths, and the SigV4
        # signature must cover the path exactly as sent. '/' in ARNs must be %2F.
        model_path = f"{self.base_url}/model/{opaque_segment(target.model)}"
        if req.endpoint is Endpoint.EMBEDDINGS:
            url, payload, accept = model_path + "/invoke", embed_body(body, target.model), "application/json"
        elif req.endpoint is Endpoint.CHAT:
            payload = converse_body(body, target.model)
            if req.stream:
                url, accept = model_path + "/converse-stream", EVENTSTREAM
            else:
                url, accept = model_path + "/converse", "application/json"
        else:
            raise bad_request("Bedrock supports chat and embeddings only")
        raw = dumps(payload)
        headers = {"content-type": "application/json", "accept": accept, **self.cfg.headers}
        if creds.api_key:
            headers["authorization"] = "Bearer " + creds.api_key
            return HttpCall("POST", url, headers, raw)
        aws = self._credentials(creds)
        if aws is None:
            raise UpstreamError(ErrorKind.AUTH, "bedrock provider has neither an API key nor AWS credentials")
        return HttpCall("POST", url, sign("POST", url, headers, raw, aws, self.region, SERVICE, self.clock()), raw)

    def parse(
        self, req: CanonicalRequest, target: Target, status: int, headers: Headers, body: bytes
    ) -> CanonicalResponse:
        if status >= 400:
            raise self.classify_error(status, headers, body)
        data = loads_object(body)
        if req.endpoint is Endpoint.EMBEDDINGS:
            out, usage = embeddings_from_bedrock(data, target.model, headers, req.body)
            return CanonicalResponse(out, usage)
        request_id = headers.get("x-amzn-requestid") or headers.get("x-amzn-RequestId") or uuid.uuid4().hex
        out, chat_usage = response_from_converse(
            data, target.model, int(self.clock()), request_id, json_mode_of(req.body)
        )
        return CanonicalResponse(out, chat_usage)

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> BedrockStreamDecoder:
        return BedrockStreamDecoder(
            target.model, int(self.clock()), json_mode_of(req.body), self.cfg.max_event_bytes
        )

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        return bedrock_error(status, headers, body)
