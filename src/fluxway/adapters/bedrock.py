"""Amazon Bedrock: the Converse / ConverseStream APIs for chat, InvokeModel for embeddings.

* Chat: ``POST {base}/model/{modelId}/converse`` (JSON) or ``/converse-stream`` (the AWS binary
  event stream, decoded by :mod:`fluxway.adapters.eventstream`). OpenAI messages become Converse
  content blocks (text, image bytes from data: URIs, documents, toolUse, toolResult); ``system``
  messages become the top-level ``system`` blocks; consecutive turns of one role are merged.
* Embeddings: ``POST {base}/model/{modelId}/invoke`` with Titan (``{"inputText"}``) or Cohere
  (``{"texts", "input_type"}``) bodies.
* Auth: a Bedrock API key (``api_keys``) as ``Authorization: Bearer``, else SigV4 (service
  ``bedrock``) with the provider's AWS credentials. The signing time comes from ``clock``.

The Converse shapes follow botocore's ``bedrock-runtime`` service model (2023-09-30).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from fluxway.adapters.aws_sigv4 import AwsCredentials, sign
from fluxway.adapters.base import Headers, dumps, kind_for_status, loads_object, openai_chunk, retry_after_seconds
from fluxway.adapters.cohere import bad_request, cohere_embed_vectors, embedding_texts, openai_embeddings
from fluxway.adapters.eventstream import MAX_MESSAGE, EventMessage, EventStreamDecoder
from fluxway.adapters.names import opaque_segment
from fluxway.adapters.settings import BedrockSettings
from fluxway.canonical import (
    JSON,
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

SERVICE = "bedrock"
EVENTSTREAM = "application/vnd.amazon.eventstream"
# The tool a json_object request is answered through (its input becomes the message content).
JSON_TOOL = "json_response"

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
_DOC_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "text/plain": "txt",
    "text/html": "html",
    "text/markdown": "md",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)(?:;[^,]*)?;base64,(.*)$", re.DOTALL)

# AWS error type (from x-amzn-errortype, __type or :exception-type, lower-cased, no "exception") -> kind
_ERROR_TYPES = {
    "throttling": ErrorKind.RATE_LIMITED,
    "servicequotaexceeded": ErrorKind.RATE_LIMITED,
    "toomanyrequests": ErrorKind.RATE_LIMITED,
    "modelnotready": ErrorKind.OVERLOADED,
    "serviceunavailable": ErrorKind.OVERLOADED,
    "modeltimeout": ErrorKind.TIMEOUT,
    "internalserver": ErrorKind.UPSTREAM_5XX,
    "internalfailure": ErrorKind.UPSTREAM_5XX,
    "modelerror": ErrorKind.UPSTREAM_5XX,
    "modelstreamerror": ErrorKind.UPSTREAM_5XX,
    "accessdenied": ErrorKind.AUTH,
    "unrecognizedclient": ErrorKind.AUTH,
    "invalidsignature": ErrorKind.AUTH,
    "incompletesignature": ErrorKind.AUTH,
    "expiredtoken": ErrorKind.AUTH,
    "missingauthenticationtoken": ErrorKind.AUTH,
    "invalidclienttokenid": ErrorKind.AUTH,
    "resourcenotfound": ErrorKind.NOT_FOUND,
}
_CONTEXT_HINTS = ("too long", "context", "too many tokens", "too many input tokens")


# ---------------------------------------------------------------------------------------------
# Request translation: OpenAI chat body -> Converse request


def _data_uri(url: str, what: str) -> tuple[str, str]:
    m = _DATA_URI.match(url)
    if not m:
        raise bad_request(f"Bedrock takes {what} only as base64 data: URIs")
    return m.group(1).lower(), "".join(m.group(2).split())


def _image_block(url: str) -> JSON:
    if url.startswith("s3://"):
        ext = url.rsplit(".", 1)[-1].lower()
        return {"image": {"format": _IMAGE_FORMATS.get(ext, "png"), "source": {"s3Location": {"uri": url}}}}
    mime, data = _data_uri(url, "images")
    fmt = _IMAGE_FORMATS.get(mime.partition("/")[2])
    if not mime.startswith("image/") or fmt is None:
        raise bad_request(f"Bedrock does not accept image type {mime!r} (png, jpeg, gif, webp)")
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _document_block(file: Any, index: int) -> JSON:
    if not isinstance(file, dict) or not isinstance(file.get("file_data"), str):
        raise bad_request("Bedrock takes file parts only with inline file_data (a data: URI)")
    mime, data = _data_uri(file["file_data"], "files")
    fmt = _DOC_FORMATS.get(mime)
    if fmt is None:
        raise bad_request(f"Bedrock does not accept documents of type {mime!r}")
    stem = str(file.get("filename") or f"document-{index}").rsplit(".", 1)[0]
    name = re.sub(r"\s+", " ", re.sub(r"[^A-Za-z0-9\s\-()\[\]]", "-", stem)).strip() or f"document-{index}"
    return {"document": {"format": fmt, "name": name, "source": {"bytes": data}}}


def _content_blocks(content: Any, *, allow_media: bool = True) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise bad_request("message content must be a string or a list of parts")
    blocks: list[JSON] = []
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise bad_request("message content parts must be objects")
        kind = part.get("type")
        if kind in ("text", "input_text"):
            text = part.get("text") or ""
            if text.strip():
                blocks.append({"text": text})
        elif kind == "image_url" and allow_media:
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise bad_request("image_url part needs a url")
            blocks.append(_image_block(url))
        elif kind == "file" and allow_media:
            blocks.append(_document_block(part.get("file"), i))
        else:
            raise bad_request(f"Bedrock Converse does not accept '{kind}' content parts here")
    return blocks


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _tool_use(call: Any) -> JSON:
    if not isinstance(call, dict):
        raise bad_request("tool_calls entries must be objects")
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = orjson.loads(args) if args.strip() else {}
        except orjson.JSONDecodeError:
            raise bad_request(f"tool call {call.get('id')!r} has arguments that are not JSON") from None
    if not isinstance(args, dict):
        args = {} if args is None else {"value": args}
    return {"toolUse": {"toolUseId": call.get("id") or "", "name": fn.get("name") or "", "input": args}}


def _tool_result(m: JSON) -> JSON:
    content = m.get("content")
    blocks = _content_blocks(content) if isinstance(content, list) else []
    if not blocks:
        text = _text(content)
        blocks = [{"text": text if text.strip() else "(empty)"}]
    return {"toolResult": {"toolUseId": m.get("tool_call_id") or "", "content": blocks}}


def _reasoning_blocks(blocks: Any) -> list[JSON]:
    """Anthropic-style thinking blocks (``thinking_blocks`` on an assistant turn) as reasoningContent."""
    out: list[JSON] = []
    for b in blocks if isinstance(blocks, list) else []:
        if not isinstance(b, dict):
            continue
        if b.get("type") == "thinking" and b.get("thinking"):
            text: JSON = {"text": b["thinking"]}
            if b.get("signature"):
                text["signature"] = b["signature"]
            out.append({"reasoningContent": {"reasoningText": text}})
        elif b.get("type") == "redacted_thinking" and b.get("data"):
            out.append({"reasoningContent": {"redactedContent": b["data"]}})
    return out


def _conversation(messages: Any, keep_thinking: bool = False) -> tuple[list[JSON], list[JSON]]:
    """(system blocks, messages) with consecutive same-role turns merged."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list")
    system: list[JSON] = []
    turns: list[JSON] = []
    for m in messages:
        if not isinstance(m, dict):
            raise bad_request("each message must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            text = _text(m.get("content"))
            if text.strip():
                system.append({"text": text})
            continue
        if role == "user":
            bedrock_role, blocks = "user", _content_blocks(m.get("content"))
        elif role == "assistant":
            bedrock_role = "assistant"
            blocks = _content_blocks(m.get("content"), allow_media=False)
            blocks += [_tool_use(c) for c in m.get("tool_calls") or []]
            if keep_thinking and blocks:
                blocks = _reasoning_blocks(m.get("thinking_blocks")) + blocks
        elif role in ("tool", "function"):
            bedrock_role, blocks = "user", [_tool_result(m)]
        else:
            raise bad_request(f"unknown message role {role!r}")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == bedrock_role:
            prev = turns[-1]["content"]
            # Tool results lead a user turn (Anthropic models require it).
            if "toolResult" in blocks[0]:
                n = sum(1 for b in prev if "toolResult" in b)
                prev[n:n] = blocks
            else:
                prev.extend(blocks)
        else:
            turns.append({"role": bedrock_role, "content": blocks})
    if turns and turns[-1]["role"] == "assistant":
        last = turns[-1]["content"][-1]
        if "text" in last:
            last["text"] = last["text"].rstrip()
    return system, turns


def _tool_spec(tool: Any) -> JSON:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise bad_request("Bedrock Converse supports only function tools")
    fn = tool.get("function") or {}
    spec: JSON = {
        "name": fn.get("name") or "",
        "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
    }
    if fn.get("description"):
        spec["description"] = fn["description"]
    if fn.get("strict") is True:
        spec["strict"] = True
    return {"toolSpec": spec}


def _tool_config(body: JSON, turns: list[JSON], json_mode: bool) -> JSON | None:
    tools = [_tool_spec(t) for t in body.get("tools") or []]
    used = {b["toolUse"]["name"] for t in turns for b in t["content"] if "toolUse" in b}
    has_history = bool(used) or any("toolResult" in b for t in turns for b in t["content"])
    choice = body.get("tool_choice")
    if not tools and has_history:
        # Converse needs a toolConfig whenever the history has tool blocks.
        tools = [{"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object", "properties": {}}}}}
                 for n in sorted(used) or ["tool"]]
    if json_mode:
        tools.append({"toolSpec": {"name": JSON_TOOL, "description": "Answer with one JSON object.",
                                   "inputSchema": {"json": {"type": "object"}}}})
        return {"tools": tools, "toolChoice": {"tool": {"name": JSON_TOOL}}}
    if choice == "none" and not has_history:
        return None
    if not tools:
        return None
    config: JSON = {"tools": tools}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise bad_request("tool_choice needs function.name")
        config["toolChoice"] = {"tool": {"name": name}}
    return config


def json_mode_of(body: JSON) -> bool:
    """A json_object request with no tools of its own is answered through the forced JSON tool."""
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_object" and not body.get("tools")


# reasoning_effort -> an extended-thinking budget for Anthropic models (litellm's low = 1024).
_EFFORT_BUDGET = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 32768}


def _thinking(body: JSON, model: str) -> JSON | None:
    """Extended thinking for Claude on Bedrock (``additionalModelRequestFields.thinking``)."""
    if "anthropic" not in model and "claude" not in model:
        return None
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        return thinking
    budget = _EFFORT_BUDGET.get(str(body.get("reasoning_effort") or ""))
    return {"type": "enabled", "budget_tokens": budget} if budget else None


def converse_body(body: JSON, model: str = "") -> JSON:
    thinking = _thinking(body, model.lower())
    system, turns = _conversation(body.get("messages"), keep_thinking=thinking is not None)
    out: JSON = {"messages": turns}
    if system:
        out["system"] = system
    inference: JSON = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if inference:
        out["inferenceConfig"] = inference
    extra: JSON = {}
    if body.get("top_k") is not None:
        extra["top_k"] = body["top_k"]
    if thinking is not None:
        extra["thinking"] = thinking
    if extra:
        out["additionalModelRequestFields"] = extra
    json_mode = json_mode_of(body)
    tool_config = _tool_config(body, turns, json_mode)
    if tool_config:
        out["toolConfig"] = tool_config
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") or {"type": "object"}
        js: JSON = {"schema": orjson.dumps(schema).decode(), "name": spec.get("name") or "response"}
        if spec.get("description"):
            js["description"] = spec["description"]
        out["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": js}}}
    return out


# ---------------------------------------------------------------------------------------------
# Response translation


def usage_of(usage: Any) -> Usage | None:
    """Converse ``usage``; OpenAI's prompt_tokens include cached (read and written) tokens."""
    if not isinstance(usage, dict):
        return None
    cache_read = int(usage.get("cacheReadInputTokens") or 0)
    cache_write = int(usage.get("cacheWriteInputTokens") or 0)
    return Usage(
        prompt_tokens=int(usage.get("inputTokens") or 0) + cache_read + cache_write,
        completion_tokens=int(usage.get("outputTokens") or 0),
        cached_tokens=cache_read,
    )


def finish_reason(stop: Any, json_mode: bool = False) -> str:
    reason = _FINISH.get(str(stop or "end_turn"), "stop")
    return "stop" if json_mode and reason == "tool_calls" else reason


def _message(content: Any, json_mode: bool) -> JSON:
    texts: list[str] = []
    reasoning: list[str] = []
    thinking: list[JSON] = []
    calls: list[JSON] = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if "text" in block:
            texts.append(str(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"] or {}
            if json_mode and use.get("name") == JSON_TOOL:
                texts.append(orjson.dumps(use.get("input") or {}).decode())
                continue
            calls.append({"id": use.get("toolUseId", ""), "type": "function",
                          "function": {"name": use.get("name", ""),
                                       "arguments": orjson.dumps(use.get("input") or {}).decode()}})
        elif "reasoningContent" in block:
            rc = block["reasoningContent"] or {}
            rt = rc.get("reasoningText") or {}
            if rt.get("text"):
                reasoning.append(rt["text"])
                thinking.append({"type": "thinking", "thinking": rt["text"], "signature": rt.get("signature") or ""})
            elif rc.get("redactedContent"):
                thinking.append({"type": "redacted_thinking", "data": rc["redactedContent"]})
    msg: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        msg["tool_calls"] = calls
    if reasoning:
        msg["reasoning_content"] = "".join(reasoning)
    if thinking:
        msg["thinking_blocks"] = thinking
    return msg


def error_kind(error_type: str, message: str, status: int) -> ErrorKind:
    key = error_type.split(":", 1)[0].split("#")[-1].strip().lower()
    key = key.removesuffix("exception")
    if key == "validation":
        text = message.lower()
        return ErrorKind.CONTEXT_LENGTH if any(h in text for h in _CONTEXT_HINTS) else ErrorKind.BAD_REQUEST
    if key in _ERROR_TYPES:
        return _ERROR_TYPES[key]
    return kind_for_status(status, message)


def bedrock_error(status: int, headers: Headers, body: bytes) -> UpstreamError:
    parsed: JSON | None = None
    message = ""
    error_type = headers.get("x-amzn-errortype") or headers.get("X-Amzn-ErrorType") or ""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        parsed = data
        message = str(data.get("message") or data.get("Message") or "")
        error_type = error_type or str(data.get("__type") or data.get("code") or "")
    if not message:
        message = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    kind = error_kind(error_type, message, status)
    name = error_type.split(":", 1)[0].split("#")[-1]
    return UpstreamError(
        kind,
        f"{name}: {message}" if name else message,
        status=status,
        retry_after=retry_after_seconds(headers),
        body=parsed,
    )


# ---------------------------------------------------------------------------------------------
# The adapter


def _embed_family(model: str) -> str:
    m = model.lower()
    if "titan-embed" in m:
        return "titan"
    if "cohere.embed" in m:
        return "cohere"
    raise bad_request(f"Bedrock embeddings support Titan and Cohere embed models, not {model!r}")


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

    def _embed_body(self, body: JSON, model: str) -> JSON:
        texts = embedding_texts(body)
        if _embed_family(model) == "titan":
            if len(texts) != 1:
                raise bad_request("Titan embedding models take one input per request")
            out: JSON = {"inputText": texts[0]}
            if body.get("dimensions"):
                out["dimensions"] = body["dimensions"]
            return out
        return {"texts": texts, "input_type": body.get("input_type") or "search_document",
                "embedding_types": ["float"]}

    def build(self, req: CanonicalRequest, target: Target, creds: Credentials) -> HttpCall:
        body = {k: v for k, v in req.body.items() if k not in self.drop} if self.drop else req.body
        # ':' stays as it is: HTTP clients (yarl) normalise %3A back to ':' in paths, and the SigV4
        # signature must cover the path exactly as sent. '/' in ARNs must be %2F.
        model_path = f"{self.base_url}/model/{opaque_segment(target.model)}"
        if req.endpoint is Endpoint.EMBEDDINGS:
            url, payload, accept = model_path + "/invoke", self._embed_body(body, target.model), "application/json"
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
            return self._parse_embeddings(req, target, headers, data)
        output = data.get("output")
        message = output.get("message") if isinstance(output, dict) else None
        if not isinstance(message, dict):
            raise UpstreamError(ErrorKind.PROTOCOL, "Bedrock Converse answer has no output.message")
        json_mode = json_mode_of(req.body)
        usage = usage_of(data.get("usage"))
        request_id = headers.get("x-amzn-requestid") or headers.get("x-amzn-RequestId") or uuid.uuid4().hex
        out: JSON = {
            "id": "chatcmpl-" + request_id,
            "object": "chat.completion",
            "created": int(self.clock()),
            "model": target.model,
            "choices": [{"index": 0, "message": _message(message.get("content"), json_mode), "logprobs": None,
                         "finish_reason": finish_reason(data.get("stopReason"), json_mode)}],
        }
        if usage:
            out["usage"] = usage.to_openai()
        return CanonicalResponse(out, usage)

    def _parse_embeddings(
        self, req: CanonicalRequest, target: Target, headers: Headers, data: JSON
    ) -> CanonicalResponse:
        if _embed_family(target.model) == "titan":
            vec = data.get("embedding")
            if not isinstance(vec, list):
                raise UpstreamError(ErrorKind.PROTOCOL, "Titan answer has no 'embedding'")
            vectors, tokens = [vec], int(data.get("inputTextTokenCount") or 0)
        else:
            vectors = cohere_embed_vectors(data)
            count = headers.get("x-amzn-bedrock-input-token-count") or headers.get("X-Amzn-Bedrock-Input-Token-Count")
            tokens = int(count) if count and count.isdigit() else 0
        out = openai_embeddings(vectors, target.model, tokens, req.body)
        return CanonicalResponse(out, Usage(prompt_tokens=tokens))

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> BedrockStreamDecoder:
        return BedrockStreamDecoder(
            target.model, int(self.clock()), json_mode_of(req.body), self.cfg.max_event_bytes
        )

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        return bedrock_error(status, headers, body)


class BedrockStreamDecoder:
    """ConverseStream event-stream messages -> OpenAI ``chat.completion.chunk`` dicts."""

    __slots__ = ("_created", "_events", "_id", "_json_blocks", "_json_mode", "_model", "_stopped", "_tools")

    def __init__(
        self, model: str, created: int, json_mode: bool = False, max_event_bytes: int = MAX_MESSAGE
    ) -> None:
        self._events = EventStreamDecoder(max_event_bytes)
        self._model = model
        self._created = created
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._json_mode = json_mode
        self._json_blocks: set[int] = set()
        self._tools: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        self._stopped = False

    def feed(self, data: bytes) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for msg in self._events.feed(data):
            self._message(msg, out)
        return out

    def close(self) -> list[StreamChunk]:
        self._events.close()
        if not self._stopped:
            raise UpstreamError(ErrorKind.PROTOCOL, "Bedrock stream ended before messageStop")
        return []

    def _chunk(self, delta: JSON, finish: str | None = None) -> StreamChunk:
        return openai_chunk(self._id, self._created, self._model, delta, finish)

    def _message(self, msg: EventMessage, out: list[StreamChunk]) -> None:
        mtype = msg.header(":message-type") or "event"
        if mtype == "exception":
            xtype = msg.header(":exception-type") or "exception"
            text = ""
            try:
                payload = orjson.loads(msg.payload) if msg.payload else {}
                if isinstance(payload, dict):
                    text = str(payload.get("message") or payload.get("Message") or "")
            except orjson.JSONDecodeError:
                text = msg.payload[:200].decode("utf-8", "replace")
            raise UpstreamError(error_kind(xtype, text, 500), f"{xtype}: {text}".rstrip(": "))
        if mtype == "error":
            code = msg.header(":error-code") or "error"
            text = msg.header(":error-message") or ""
            raise UpstreamError(error_kind(code, text, 500), f"{code}: {text}".rstrip(": "))
        etype = msg.header(":event-type")
        try:
            ev = orjson.loads(msg.payload) if msg.payload else {}
        except orjson.JSONDecodeError:
            raise UpstreamError(ErrorKind.PROTOCOL, f"Bedrock sent a malformed {etype} event") from None
        if not isinstance(ev, dict):
            raise UpstreamError(ErrorKind.PROTOCOL, f"Bedrock sent a {etype} event that is not an object")
        if etype == "messageStart":
            out.append(self._chunk({"role": "assistant", "content": ""}))
        elif etype == "contentBlockStart":
            use = (ev.get("start") or {}).get("toolUse")
            index = int(ev.get("contentBlockIndex") or 0)
            if isinstance(use, dict):
                if self._json_mode and use.get("name") == JSON_TOOL:
                    self._json_blocks.add(index)
                    return
                tool_index = self._tools.setdefault(index, len(self._tools))
                out.append(self._chunk({"tool_calls": [{
                    "index": tool_index, "id": use.get("toolUseId", ""), "type": "function",
                    "function": {"name": use.get("name", ""), "arguments": ""},
                }]}))
        elif etype == "contentBlockDelta":
            self._delta(int(ev.get("contentBlockIndex") or 0), ev.get("delta") or {}, out)
        elif etype == "messageStop":
            self._stopped = True
            out.append(self._chunk({}, finish_reason(ev.get("stopReason"), self._json_mode)))
        elif etype == "metadata":
            usage = usage_of(ev.get("usage"))
            if usage:
                out.append(openai_chunk(self._id, self._created, self._model, usage=usage.to_openai()))
        # contentBlockStop and unknown events carry nothing to send

    def _delta(self, index: int, delta: JSON, out: list[StreamChunk]) -> None:
        if "text" in delta:
            if delta["text"]:
                out.append(self._chunk({"content": delta["text"]}))
        elif "toolUse" in delta:
            piece = (delta["toolUse"] or {}).get("input") or ""
            if not piece:
                return
            if index in self._json_blocks:
                out.append(self._chunk({"content": piece}))
                return
            tool_index = self._tools.setdefault(index, len(self._tools))
            out.append(self._chunk({"tool_calls": [{"index": tool_index, "function": {"arguments": piece}}]}))
        elif "reasoningContent" in delta:
            text = (delta["reasoningContent"] or {}).get("text")
            if text:
                out.append(self._chunk({"reasoning_content": text}))
