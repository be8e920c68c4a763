"""Cohere v2: ``POST /v2/chat`` (JSON or SSE stream) and ``POST /v2/embed``, Bearer auth.

Request: OpenAI messages map almost one to one (system, user with text / image_url parts,
assistant with ``tool_calls``, tool with ``tool_call_id``); ``top_p`` -> ``p``, ``stop`` ->
``stop_sequences``, ``response_format`` -> ``{"type": "json_object", "json_schema"?}``,
``tool_choice`` required/none -> ``REQUIRED``/``NONE`` (a named function keeps only that tool and
requires it). Response: ``message.content[].text`` joined, ``tool_calls`` as they are, finish reasons
mapped, usage from ``billed_units`` (what Cohere charges) falling back to ``tokens``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from fluxway.adapters.base import Headers, dumps, kind_for_status, loads_object, openai_chunk, retry_after_seconds
from fluxway.adapters.settings import CohereSettings
from fluxway.adapters.toolkit import (
    arguments_delta,
    assistant_message,
    bad_request,
    chat_choice,
    chat_completion,
    cohere_embed_fields,
    cohere_embed_vectors,
    embedding_texts,
    empty_object_schema,
    fallback_message,
    image_url_of,
    json_or_none,
    max_tokens_of,
    openai_embeddings,
    stream_event,
    tool_call,
    tool_call_start,
)
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
from fluxway.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder

DEFAULT_BASE_URL = "https://api.cohere.com"

# OpenAI field -> Cohere v2 field, for fields copied as they are.
_RENAMED = (
    ("temperature", "temperature"),
    ("top_p", "p"),
    ("top_k", "k"),
    ("seed", "seed"),
    ("frequency_penalty", "frequency_penalty"),
    ("presence_penalty", "presence_penalty"),
)

# Finish reasons (upper-cased) -> OpenAI; the ones that are failures raise instead.
_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "CONTENT_BLOCKED": "content_filter",
    "ERROR_TOXIC": "content_filter",
    "USER_CANCEL": "stop",
}
_FAILED_FINISH = {
    "ERROR": ErrorKind.UPSTREAM_5XX,
    "TIMEOUT": ErrorKind.TIMEOUT,
    "ERROR_LIMIT": ErrorKind.CONTEXT_LENGTH,
}


# ---------------------------------------------------------------------------------------------
# Request translation


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")
        )
    return str(content)


def _user_content(content: Any) -> Any:
    if isinstance(content, str) or content is None:
        return content or ""
    if not isinstance(content, list):
        raise bad_request("message content must be a string or a list of parts")
    parts: list[JSON] = []
    for part in content:
        if not isinstance(part, dict):
            raise bad_request("message content parts must be objects")
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image_url_of(part)
            if not isinstance(url, str):
                raise bad_request("image_url part needs a url")
            img: JSON = {"url": url}
            if isinstance(image, dict) and image.get("detail"):
                img["detail"] = image["detail"]
            parts.append({"type": "image_url", "image_url": img})
        else:
            raise bad_request(f"Cohere does not accept '{kind}' content parts")
    return parts


def _tool_calls(calls: Any) -> list[JSON]:
    out: list[JSON] = []
    for call in calls or []:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") or {}
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = orjson.dumps(args or {}).decode()
        out.append(tool_call(call.get("id", ""), fn.get("name", ""), args))
    return out


def _messages(messages: Any) -> list[JSON]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list")
    out: list[JSON] = []
    for m in messages:
        if not isinstance(m, dict):
            raise bad_request("each message must be an object")
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": _text_of(content)})
        elif role == "user":
            out.append({"role": "user", "content": _user_content(content)})
        elif role == "assistant":
            msg: JSON = {"role": "assistant"}
            text = _text_of(content)
            if text:
                msg["content"] = text
            calls = _tool_calls(m.get("tool_calls"))
            if calls:
                msg["tool_calls"] = calls
            if "content" not in msg and not calls:
                msg["content"] = ""
            out.append(msg)
        elif role in ("tool", "function"):
            out.append({"role": "tool", "tool_call_id": m.get("tool_call_id") or m.get("name") or "",
                        "content": _text_of(content)})
        else:
            raise bad_request(f"unknown message role {role!r}")
    return out


def _tools(tools: Any) -> list[JSON]:
    out: list[JSON] = []
    for tool in tools or []:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad_request("Cohere supports only function tools")
        fn = tool.get("function") or {}
        spec: JSON = {"name": fn.get("name", ""),
                      "parameters": fn.get("parameters") or empty_object_schema()}
        if fn.get("description"):
            spec["description"] = fn["description"]
        out.append({"type": "function", "function": spec})
    return out


def chat_body(body: JSON, model: str, stream: bool) -> JSON:
    out: JSON = {"model": model, "messages": _messages(body.get("messages"))}
    tools = _tools(body.get("tools"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if t["function"]["name"] == name]
        if not tools:
            raise bad_request(f"tool_choice names an unknown function {name!r}")
        out["tool_choice"] = "REQUIRED"
    elif choice == "required":
        out["tool_choice"] = "REQUIRED"
    elif choice == "none":
        out["tool_choice"] = "NONE"
    if tools:
        out["tools"] = tools
        if any((t.get("function") or {}).get("strict") for t in body.get("tools") or [] if isinstance(t, dict)):
            out["strict_tools"] = True
    max_tokens = max_tokens_of(body)
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for src, dst in _RENAMED:
        if body.get(src) is not None:
            out[dst] = body[src]
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            out["response_format"] = {"type": "json_object", **({"json_schema": schema} if schema else {})}
    if stream:
        out["stream"] = True
    return out


# ---------------------------------------------------------------------------------------------
# Response translation


def usage_of(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    billed = usage.get("billed_units") or {}
    tokens = usage.get("tokens") or {}
    src = billed if billed.get("input_tokens") is not None or billed.get("output_tokens") is not None else tokens
    if not src:
        return None
    return Usage(
        prompt_tokens=int(src.get("input_tokens") or 0),
        completion_tokens=int(src.get("output_tokens") or 0),
        cached_tokens=int(usage.get("cached_tokens") or 0),
    )


def finish_reason(reason: Any, error: Any = None) -> str:
    key = str(reason or "COMPLETE").upper()
    if key in _FAILED_FINISH:
        raise UpstreamError(_FAILED_FINISH[key], f"Cohere stopped with {key}" + (f": {error}" if error else ""))
    return _FINISH.get(key, "stop")


class CohereAdapter:
    """Cohere's v2 chat and embed APIs."""

    def __init__(self, cfg: CohereSettings, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.base_url = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        if self.base_url.endswith("/v2"):
            self.base_url = self.base_url[:-3]
        self.drop = frozenset(cfg.drop_params)
        self.static_headers = {"content-type": "application/json", **cfg.headers}

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint in (Endpoint.CHAT, Endpoint.EMBEDDINGS, Endpoint.RERANK)

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
        """``/v2/rerank``: the request and answer are Cohere's, which is the shape Fluxway serves."""
        if endpoint is not Endpoint.RERANK:
            raise bad_request(f"Cohere does not serve {endpoint.value}")
        headers = {**self.static_headers, "accept": "application/json"}
        if content_type:
            headers["content-type"] = content_type
        if creds.api_key:
            headers["authorization"] = "Bearer " + creds.api_key
        return HttpCall(method, self.base_url + "/v2/rerank", headers, body)

    def build(self, req: CanonicalRequest, target: Target, creds: Credentials) -> HttpCall:
        headers = {**self.static_headers}
        if creds.api_key:
            headers["authorization"] = "Bearer " + creds.api_key
        body = {k: v for k, v in req.body.items() if k not in self.drop} if self.drop else req.body
        if req.endpoint is Endpoint.EMBEDDINGS:
            payload: JSON = {"model": target.model, **cohere_embed_fields(embedding_texts(body), body)}
            if body.get("dimensions"):
                payload["output_dimension"] = body["dimensions"]
            headers["accept"] = "application/json"
            return HttpCall("POST", self.base_url + "/v2/embed", headers, dumps(payload))
        if req.endpoint is not Endpoint.CHAT:
            raise bad_request("Cohere supports chat and embeddings only")
        headers["accept"] = "text/event-stream" if req.stream else "application/json"
        return HttpCall("POST", self.base_url + "/v2/chat", headers, dumps(chat_body(body, target.model, req.stream)))

    def parse(
        self, req: CanonicalRequest, target: Target, status: int, headers: Headers, body: bytes
    ) -> CanonicalResponse:
        if status >= 400:
            raise self.classify_error(status, headers, body)
        data = loads_object(body)
        if req.endpoint is Endpoint.EMBEDDINGS:
            vectors = cohere_embed_vectors(data)
            billed = (data.get("meta") or {}).get("billed_units") or {}
            tokens = int(billed.get("input_tokens") or 0)
            out = openai_embeddings(vectors, target.model, tokens, req.body)
            return CanonicalResponse(out, Usage(prompt_tokens=tokens))
        message = data.get("message")
        if not isinstance(message, dict):
            raise UpstreamError(ErrorKind.PROTOCOL, "Cohere chat answer has no 'message'")
        texts: list[str] = []
        thinking: list[str] = []
        for block in message.get("content") or []:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    texts.append(block.get("text") or "")
                elif block.get("type") == "thinking":
                    thinking.append(block.get("thinking") or "")
        calls = _tool_calls(message.get("tool_calls"))
        msg = assistant_message("".join(texts) if texts or not calls else None, calls, thinking)
        usage = usage_of(data.get("usage"))
        out_body = chat_completion(
            "chatcmpl-" + str(data.get("id") or uuid.uuid4().hex),
            int(self.clock()),
            target.model,
            [chat_choice(0, msg, finish_reason(data.get("finish_reason")))],
            usage.to_openai() if usage else None,
        )
        return CanonicalResponse(out_body, usage)

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> CohereStreamDecoder:
        return CohereStreamDecoder(target.model, int(self.clock()), self.cfg.max_event_bytes)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        return cohere_error(status, headers, body)


def cohere_error(status: int, headers: Headers, body: bytes) -> UpstreamError:
    message = ""
    parsed: JSON | None = None
    data = json_or_none(body)
    if isinstance(data, dict):
        parsed = data
        msg = data.get("message") or data.get("error") or data.get("detail")
        if isinstance(msg, dict):
            msg = msg.get("message")
        message = str(msg or "")
    if not message:
        message = fallback_message(status, body)
    if status == 498:  # Cohere: invalid token
        kind = ErrorKind.AUTH
    elif status == 499:  # the request was cancelled upstream
        kind = ErrorKind.UPSTREAM_5XX
    elif status == 503:  # Cohere's "service unavailable": capacity, retry later
        kind = ErrorKind.OVERLOADED
    else:
        kind = kind_for_status(status, message)
        if kind is ErrorKind.BAD_REQUEST and "too many tokens" in message.lower():
            kind = ErrorKind.CONTEXT_LENGTH
    return UpstreamError(kind, message, status=status, retry_after=retry_after_seconds(headers), body=parsed)


class CohereStreamDecoder:
    """Cohere v2 SSE events -> OpenAI ``chat.completion.chunk`` dicts."""

    __slots__ = ("_created", "_ended", "_id", "_model", "_sse", "_tool_index")

    def __init__(self, model: str, created: int, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._sse = SSEDecoder(max_event_bytes)
        self._model = model
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._created = created
        self._ended = False
        self._tool_index: dict[int, int] = {}

    def feed(self, data: bytes) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for ev in self._sse.feed(data):
            self._event(ev.data, out)
        return out

    def close(self) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for ev in self._sse.flush():
            self._event(ev.data, out)
        if not self._ended:
            raise UpstreamError(ErrorKind.PROTOCOL, "Cohere stream ended before message-end")
        return out

    def _chunk(self, delta: JSON, finish: str | None = None) -> StreamChunk:
        return openai_chunk(self._id, self._created, self._model, delta, finish)

    def _event(self, text: str, out: list[StreamChunk]) -> None:
        if not text or text == "[DONE]" or self._ended:
            return
        ev = stream_event(text, "Cohere")
        kind = ev.get("type")
        delta: JSON = ev["delta"] if isinstance(ev.get("delta"), dict) else {}
        message: JSON = delta["message"] if isinstance(delta.get("message"), dict) else {}
        if kind == "message-start":
            if ev.get("id"):
                self._id = "chatcmpl-" + str(ev["id"])
            out.append(self._chunk({"role": "assistant", "content": ""}))
        elif kind == "content-delta":
            content = message.get("content") or {}
            if content.get("text"):
                out.append(self._chunk({"content": content["text"]}))
            elif content.get("thinking"):
                out.append(self._chunk({"reasoning_content": content["thinking"]}))
        elif kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            idx = self._tool_index.setdefault(int(ev.get("index") or 0), len(self._tool_index))
            fn = call.get("function") or {}
            start = tool_call_start(idx, call.get("id", ""), fn.get("name", ""), fn.get("arguments") or "")
            out.append(self._chunk(start))
        elif kind == "tool-call-delta":
            fn = (message.get("tool_calls") or {}).get("function") or {}
            idx = self._tool_index.setdefault(int(ev.get("index") or 0), len(self._tool_index))
            if fn.get("arguments"):
                out.append(self._chunk(arguments_delta(idx, fn["arguments"])))
        elif kind == "message-end":
            self._ended = True
            finish = finish_reason(delta.get("finish_reason"), delta.get("error"))
            out.append(self._chunk({}, finish))
            usage = usage_of(delta.get("usage"))
            if usage:
                out.append(openai_chunk(self._id, self._created, self._model, usage=usage.to_openai()))
        # content-start / content-end / tool-plan-delta / tool-call-end / citation-* / debug: nothing to send
