"""Google Gemini (Generative Language API): generateContent, streamGenerateContent, batchEmbedContents.

Requests: an OpenAI chat body becomes ``contents``/``parts`` with a ``systemInstruction``,
``functionDeclarations`` and a ``generationConfig``. Gemini function calls carry no ids, so the
adapter synthesises ``call_...`` ids (with the call's thought signature folded in, so that a
Gemini 3 model gets it back with the tool result) and maps tool results back by function name.
Answers may use camelCase or snake_case keys; both are read. Pure: no I/O.
"""

from __future__ import annotations

import base64
import re
import struct
import time
import uuid
from typing import Any

import orjson

from fluxway.adapters.base import Headers, dumps, kind_for_status, loads_object, openai_chunk, retry_after_seconds
from fluxway.adapters.names import invalid_model, path_segment, segments_path
from fluxway.adapters.settings import GeminiSettings
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
from fluxway.tokens import count_text

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_VERSION = "v1beta"
# A tool call id is "call_<random>" or "call_<random>__thought__<signature>".
SIGNATURE_SEPARATOR = "__thought__"
# Gemini 3 documents this value for function calls whose real signature is unknown
# (history written by another model).
DUMMY_SIGNATURE = "skip_thought_signature_validator"
# reasoning_effort -> thinkingConfig.thinkingBudget (Gemini 2.x) / thinkingLevel (Gemini 3).
THINKING_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
THINKING_LEVEL = {
    "none": "low",
    "minimal": "low",
    "low": "low",
    "medium": "high",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}

FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "LANGUAGE",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

_STATUS_KINDS = {
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.OVERLOADED,
    "DEADLINE_EXCEEDED": ErrorKind.TIMEOUT,
    "INTERNAL": ErrorKind.UPSTREAM_5XX,
    "UNKNOWN": ErrorKind.UPSTREAM_5XX,
    "UNAUTHENTICATED": ErrorKind.AUTH,
    "PERMISSION_DENIED": ErrorKind.AUTH,
    # e.g. "free tier not available in your country": another key or provider may work.
    "FAILED_PRECONDITION": ErrorKind.AUTH,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "INVALID_ARGUMENT": ErrorKind.BAD_REQUEST,
}

_MIME_BY_EXT = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "mp3": "audio/mp3",
    "wav": "audio/wav",
    "mp4": "video/mp4",
}
_VERSIONED = re.compile(r"/v\d+(?:alpha|beta)?\d*$")


# What a body of an unexpected shape raises in translation code (orjson's encode error is a TypeError).
SHAPE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError, struct.error)


def _bad(message: str) -> UpstreamError:
    return UpstreamError(ErrorKind.BAD_REQUEST, message, status=400)


def _odd(what: str, exc: BaseException) -> UpstreamError:
    return UpstreamError(ErrorKind.PROTOCOL, f"gemini sent {what} of an unexpected shape ({exc!r:.200})")


def _pick(d: Any, camel: str, snake: str) -> Any:
    """A field under its camelCase or snake_case name."""
    if not isinstance(d, dict):
        return None
    v = d.get(camel)
    return d.get(snake) if v is None else v


def make_call_id(signature: str | None = None) -> str:
    base = "call_" + uuid.uuid4().hex[:24]
    return base + SIGNATURE_SEPARATOR + signature if signature else base


def signature_of(call_id: str) -> str | None:
    _, sep, sig = call_id.partition(SIGNATURE_SEPARATOR)
    return sig if sep and sig else None


# ---------------------------------------------------------------------------------------------
# Request: OpenAI chat body -> generateContent body


def _parse_data_uri(url: str) -> tuple[str, str] | None:
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or ";base64" not in header:
        return None
    return header.split(";", 1)[0] or "application/octet-stream", data


def _media_part(url: str, where: str) -> JSON:
    parsed = _parse_data_uri(url)
    if parsed:
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    if url.startswith(("https://", "http://", "gs://")):
        ext = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
        return {"fileData": {"mimeType": _MIME_BY_EXT.get(ext, "image/jpeg"), "fileUri": url}}
    raise _bad(f"{where}: only base64 data: URIs and http(s) URLs are supported")


def _parts(content: Any, where: str) -> list[JSON]:
    """OpenAI message content -> Gemini parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content: expected a string or a list of parts")
    parts: list[JSON] = []
    for j, part in enumerate(content):
        pwhere = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise _bad(f"{pwhere}: expected an object")
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise _bad(f"{pwhere}.{kind}: expected a string")
            parts.append({"text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _bad(f"{pwhere}.image_url.url: expected a URL string")
            parts.append(_media_part(url, f"{pwhere}.image_url.url"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
                raise _bad(f"{pwhere}.input_audio: expected {{data, format}}")
            mime = "audio/" + str(audio.get("format") or "wav")
            parts.append({"inlineData": {"mimeType": mime, "data": audio["data"]}})
        elif kind == "file":
            f: JSON = part["file"] if isinstance(part.get("file"), dict) else {}
            ref = f.get("file_data") or f.get("file_id")
            if not isinstance(ref, str):
                raise _bad(f"{pwhere}.file: expected file_data (a data: URI) or file_id (a file URI)")
            parts.append(_media_part(ref, f"{pwhere}.file"))
        else:
            raise _bad(f"{pwhere}.type: content part '{kind}' is not supported by gemini")
    return parts


def _text(content: Any, where: str) -> str:
    return "".join(p.get("text", "") for p in _parts(content, where))


def _call_parts(tool_calls: Any, where: str, model: str) -> list[JSON]:
    if not isinstance(tool_calls, list):
        raise _bad(f"{where}.tool_calls: expected a list")
    parts: list[JSON] = []
    for j, call in enumerate(tool_calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"{where}.tool_calls[{j}]: expected a function call with a name")
        args = fn.get("arguments") or "{}"
        try:
            parsed = orjson.loads(args) if isinstance(args, str) else args
        except orjson.JSONDecodeError:
            raise _bad(f"{where}.tool_calls[{j}].function.arguments: not valid JSON") from None
        part: JSON = {"functionCall": {"name": fn["name"], "args": parsed if isinstance(parsed, dict) else {}}}
        sig = signature_of(str(call.get("id") or ""))
        if sig is None and j == 0 and model.startswith("gemini-3"):
            sig = DUMMY_SIGNATURE
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _function_response(m: JSON, where: str, names: dict[str, str]) -> JSON:
    call_id = m.get("tool_call_id")
    name = names.get(str(call_id)) or m.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.tool_call_id: no earlier assistant tool call has id {call_id!r}")
    text = _text(m.get("content"), where)
    response: Any = None
    if text.startswith("{"):
        try:
            response = orjson.loads(text)
        except orjson.JSONDecodeError:
            response = None
    if not isinstance(response, dict):
        response = {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def _append(out: list[JSON], role: str, parts: list[JSON]) -> None:
    parts = [p for p in parts if "text" not in p or p["text"]]
    if not parts:
        return
    if out and out[-1]["role"] == role:
        out[-1]["parts"].extend(parts)
    else:
        out.append({"role": role, "parts": parts})


def convert_contents(messages: Any, model: str) -> tuple[list[JSON], list[JSON]]:
    """OpenAI messages -> (systemInstruction parts, contents)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: expected a non-empty list")
    system: list[JSON] = []
    out: list[JSON] = []
    names: dict[str, str] = {}
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where}: expected an object")
        role = m.get("role")
        if role in ("system", "developer"):
            text = _text(m.get("content"), where)
            if text:
                system.append({"text": text})
        elif role == "user":
            _append(out, "user", _parts(m.get("content"), where))
        elif role == "assistant":
            parts = [p for p in _parts(m.get("content"), where) if "text" in p]
            if m.get("tool_calls"):
                for call in m["tool_calls"]:
                    if isinstance(call, dict) and isinstance(call.get("function"), dict):
                        names[str(call.get("id"))] = str(call["function"].get("name"))
                parts.extend(_call_parts(m["tool_calls"], where, model))
            _append(out, "model", parts)
        elif role == "tool":
            _append(out, "user", [_function_response(m, where, names)])
        else:
            raise _bad(f"{where}.role: role '{role}' is not supported by gemini")
    if not out:
        raise _bad("messages: nothing to send besides system messages")
    return system, out


def convert_tools(tools: Any) -> list[JSON]:
    if not isinstance(tools, list):
        raise _bad("tools: expected a list")
    decls: list[JSON] = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _bad(f"tools[{i}]: only function tools are supported by gemini")
        if not isinstance(fn.get("name"), str):
            raise _bad(f"tools[{i}].function.name: required")
        decl: JSON = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        if isinstance(fn.get("parameters"), dict):
            decl["parametersJsonSchema"] = fn["parameters"]
        decls.append(decl)
    return [{"functionDeclarations": decls}]


def convert_tool_choice(choice: Any) -> JSON | None:
    if choice is None:
        return None
    mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(choice) if isinstance(choice, str) else None
    if mode:
        return {"functionCallingConfig": {"mode": mode}}
    if isinstance(choice, dict):
        if choice.get("type") == "function" and isinstance(choice.get("function"), dict):
            name = choice["function"].get("name")
            if isinstance(name, str):
                return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
        spec = choice.get("allowed_tools")
        if choice.get("type") == "allowed_tools" and isinstance(spec, dict) and isinstance(spec.get("tools"), list):
            allowed = [
                t["function"]["name"]
                for t in spec["tools"]
                if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
            ]
            mode = "ANY" if spec.get("mode") == "required" else "AUTO"
            return {"functionCallingConfig": {"mode": mode, "allowedFunctionNames": allowed}}
    raise _bad("tool_choice: expected auto, required, none or a function")


def _generation_config(body: JSON, model: str) -> JSON:
    gc: JSON = {}
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(src) is not None:
            gc[dst] = body[src]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        gc["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if isinstance(stop, str):
        gc["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        gc["stopSequences"] = list(stop)
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        gc["candidateCount"] = n
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        gc["responseMimeType"] = "application/json"
        if rf["type"] == "json_schema":
            spec = rf.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise _bad("response_format.json_schema.schema: required")
            gc["responseJsonSchema"] = spec["schema"]
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGET:
            raise _bad(f"reasoning_effort: unknown value {effort!r}")
        if model.startswith("gemini-3"):
            gc["thinkingConfig"] = {"thinkingLevel": THINKING_LEVEL[effort], "includeThoughts": True}
        else:
            budget = THINKING_BUDGET[effort]
            gc["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget > 0}
    return gc


def build_body(body: JSON, model: str) -> JSON:
    """The generateContent body for one OpenAI chat body (which is left untouched)."""
    system, contents = convert_contents(body.get("messages"), model)
    out: JSON = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        out["tools"] = convert_tools(body["tools"])
        tool_config = convert_tool_choice(body.get("tool_choice"))
        if tool_config:
            out["toolConfig"] = tool_config
    gc = _generation_config(body, model)
    if gc:
        out["generationConfig"] = gc
    return out


def build_embeddings(body: JSON, model: str) -> JSON:
    inp = body.get("input")
    texts = [inp] if isinstance(inp, str) else inp
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _bad("input: gemini embeds a string or a list of strings (not token arrays)")
    requests: list[JSON] = []
    for text in texts:
        r: JSON = {"model": _model_path(model), "content": {"parts": [{"text": text}]}}
        if body.get("dimensions"):
            r["outputDimensionality"] = body["dimensions"]
        requests.append(r)
    return {"requests": requests}


def _model_path(model: str) -> str:
    """The model's resource name as sent in the request body (unencoded)."""
    return model if "/" in model else "models/" + model


_RESOURCE_ROOTS = frozenset({"models", "tunedModels"})


def model_url_path(model: str) -> str:
    """The model's resource name as a checked, percent-encoded URL path.

    ``gemini-1.5-flash`` -> ``models/gemini-1.5-flash``; ``models/x`` and ``tunedModels/x`` as they
    are; a Vertex-style ``projects/p/locations/l/publishers/google/models/m`` (pairs of segments).
    Anything else with a ``/`` is refused (400 ``invalid_model``), as are ``..``, ``?``, ``#``,
    whitespace and control characters (see :mod:`fluxway.adapters.names`).
    """
    if "/" not in model:
        return "models/" + path_segment(model)
    path = segments_path(model)
    segments = model.split("/")
    if (len(segments) == 2 and segments[0] in _RESOURCE_ROOTS) or (
        segments[0] == "projects" and len(segments) % 2 == 0
    ):
        return path
    raise invalid_model(model, "gemini model names are 'name', 'models/name', 'tunedModels/name' or a "
                               "'projects/...' resource name")


# ---------------------------------------------------------------------------------------------
# Answers


def usage_from_gemini(meta: Any) -> tuple[JSON, Usage]:
    """usageMetadata -> (OpenAI usage, canonical Usage); thoughts count as completion tokens."""
    prompt = int(_pick(meta, "promptTokenCount", "prompt_token_count") or 0)
    prompt += int(_pick(meta, "toolUsePromptTokenCount", "tool_use_prompt_token_count") or 0)
    candidates = int(_pick(meta, "candidatesTokenCount", "candidates_token_count") or 0)
    thoughts = int(_pick(meta, "thoughtsTokenCount", "thoughts_token_count") or 0)
    cached = int(_pick(meta, "cachedContentTokenCount", "cached_content_token_count") or 0)
    completion = candidates + thoughts
    out: JSON = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if thoughts:
        out["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return out, Usage(prompt, completion, cached_tokens=cached, reasoning_tokens=thoughts)


def finish_reason(reason: Any, has_tool_calls: bool) -> str:
    reason = str(reason or "STOP")
    if reason in FILTERED:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def _candidate_parts(cand: Any) -> list[JSON]:
    content = cand.get("content") if isinstance(cand, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _index(cand: Any, pos: int) -> int:
    index = cand.get("index") if isinstance(cand, dict) else None
    return index if isinstance(index, int) else pos


def _tool_call(part: JSON) -> JSON | None:
    fc = _pick(part, "functionCall", "function_call")
    if not isinstance(fc, dict):
        return None
    sig = _pick(part, "thoughtSignature", "thought_signature")
    args = fc.get("args")
    return {
        "id": make_call_id(sig if isinstance(sig, str) else None),
        "type": "function",
        "function": {"name": fc.get("name"), "arguments": dumps(args if args is not None else {}).decode()},
    }


def _block_reason(data: JSON) -> str | None:
    reason = _pick(_pick(data, "promptFeedback", "prompt_feedback"), "blockReason", "block_reason")
    return str(reason) if reason else None


def response_from_gemini(data: JSON, model: str) -> tuple[JSON, Usage]:
    candidates = data.get("candidates")
    choices: list[JSON] = []
    for pos, cand in enumerate(candidates if isinstance(candidates, list) else []):
        texts: list[str] = []
        reasoning: list[str] = []
        tool_calls: list[JSON] = []
        for part in _candidate_parts(cand):
            call = _tool_call(part)
            if call:
                tool_calls.append(call)
            elif isinstance(part.get("text"), str):
                (reasoning if part.get("thought") else texts).append(part["text"])
        message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        reason = finish_reason(_pick(cand, "finishReason", "finish_reason"), bool(tool_calls))
        index = _index(cand, pos)
        choices.append({"index": index, "message": message, "finish_reason": reason, "logprobs": None})
    if not choices:
        if not _block_reason(data):
            raise UpstreamError(ErrorKind.PROTOCOL, "gemini response has no candidates")
        message = {"role": "assistant", "content": None, "refusal": None}
        choices.append({"index": 0, "message": message, "finish_reason": "content_filter", "logprobs": None})
    usage, canonical = usage_from_gemini(_pick(data, "usageMetadata", "usage_metadata"))
    body: JSON = {
        "id": str(_pick(data, "responseId", "response_id") or "chatcmpl-" + uuid.uuid4().hex[:24]),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(_pick(data, "modelVersion", "model_version") or model),
        "choices": choices,
        "usage": usage,
    }
    return body, canonical


def embeddings_from_gemini(data: JSON, req: CanonicalRequest, model: str) -> tuple[JSON, Usage]:
    embeddings = data.get("embeddings")
    if not isinstance(embeddings, list):
        raise UpstreamError(ErrorKind.PROTOCOL, "gemini embeddings response has no 'embeddings' list")
    as_base64 = req.body.get("encoding_format") == "base64"
    items: list[JSON] = []
    for i, e in enumerate(embeddings):
        values = e.get("values") if isinstance(e, dict) else None
        if not isinstance(values, list):
            raise UpstreamError(ErrorKind.PROTOCOL, f"gemini embedding {i} has no 'values'")
        vector: Any = values
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        items.append({"object": "embedding", "index": i, "embedding": vector})
    meta = _pick(data, "usageMetadata", "usage_metadata")
    prompt = int(_pick(meta, "promptTokenCount", "prompt_token_count") or 0)
    estimated = not prompt
    if estimated:
        inp = req.body.get("input")
        texts = [inp] if isinstance(inp, str) else inp if isinstance(inp, list) else []
        prompt = sum(count_text(t) for t in texts if isinstance(t, str))  # o200k_base: Gemini's own ships nowhere
    body: JSON = {
        "object": "list",
        "data": items,
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }
    return body, Usage(prompt, 0, estimated=estimated)


# ---------------------------------------------------------------------------------------------
# Errors


def _retry_delay(error: JSON) -> float | None:
    details = error.get("details")
    for d in details if isinstance(details, list) else []:
        delay = _pick(d, "retryDelay", "retry_delay")
        if isinstance(d, dict) and isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


def error_from_gemini(status: int, headers: Headers, body: bytes) -> UpstreamError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # the non-SSE stream endpoint wraps its error in an array
    err: JSON = data["error"] if isinstance(data, dict) and isinstance(data.get("error"), dict) else {}
    message = str(err.get("message") or "") or body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    gstatus = str(err.get("status") or "")
    if isinstance(err.get("code"), int) and status < 400:
        status = err["code"]
    kind = _STATUS_KINDS.get(gstatus) or kind_for_status(status, message, gstatus)
    lowered = message.lower()
    if kind is ErrorKind.BAD_REQUEST:
        if "api key" in lowered or "API_KEY_INVALID" in str(err.get("details")):
            kind = ErrorKind.AUTH
        elif ("token" in lowered and "exceed" in lowered) or kind_for_status(
            status, message
        ) is ErrorKind.CONTEXT_LENGTH:
            kind = ErrorKind.CONTEXT_LENGTH
    retry_after = retry_after_seconds(headers)
    if retry_after is None:
        retry_after = _retry_delay(err)
    return UpstreamError(
        kind, message, status=status, retry_after=retry_after, body=data if isinstance(data, dict) else None
    )


# ---------------------------------------------------------------------------------------------
# The adapter


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
            raise _bad(f"gemini does not serve the {req.endpoint.value} endpoint")
        if req.stream and req.endpoint is Endpoint.CHAT:
            headers["accept"] = "text/event-stream"
        try:
            if req.endpoint is Endpoint.EMBEDDINGS:
                payload = dumps(build_embeddings(req.body, target.model))
            else:
                payload = dumps(build_body(req.body, target.model))
        except SHAPE_ERRORS as exc:
            raise _bad(f"the request cannot be translated for gemini ({exc!r:.200})") from None
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
            raise _odd("an answer", exc) from None
        return CanonicalResponse(out, usage)

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(target.model, self.cfg.max_event_bytes)

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        return error_from_gemini(status, headers, body)


class GeminiStreamDecoder:
    """``data: {GenerateContentResponse}`` events -> OpenAI chunks; usage comes in a last chunk.

    Gemini sends no terminal event: the stream is complete when every candidate has a
    ``finishReason`` (or the prompt was blocked) and the connection closes.
    """

    __slots__ = ("_created", "_finished", "_head", "_id", "_model", "_seen", "_sse", "_started", "_tools", "_usage")

    _HEAD_LIMIT = 65536

    def __init__(self, model: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._sse = SSEDecoder(max_event_bytes)
        self._model = model
        self._id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self._created = int(time.time())
        self._seen = False
        self._head = b""  # the first bytes, to report a non-SSE (plain JSON) error body
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._usage: Any = None

    def feed(self, data: bytes) -> list[StreamChunk]:
        if not self._seen and len(self._head) < self._HEAD_LIMIT:
            self._head += data[: self._HEAD_LIMIT - len(self._head)]
        return self._events(self._sse.feed(data))

    def close(self) -> list[StreamChunk]:
        out = self._events(self._sse.flush())
        if not self._seen and self._head.strip():
            err = error_from_gemini(500, {}, self._head.strip())
            if err.body is not None:
                raise err
        if not self._finished:
            raise UpstreamError(ErrorKind.PROTOCOL, "gemini stream ended before a finishReason")
        try:
            usage, _ = usage_from_gemini(self._usage)
        except SHAPE_ERRORS as exc:
            raise _odd("usage", exc) from None
        out.append(openai_chunk(self._id, self._created, self._model, usage=usage))
        return out

    def _chunk(self, index: int, delta: JSON, finish: str | None = None) -> StreamChunk:
        return openai_chunk(self._id, self._created, self._model, delta, finish, index=index)

    def _start(self, index: int, out: list[StreamChunk]) -> None:
        if index not in self._started:
            self._started.add(index)
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))

    def _events(self, events: list[Any]) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for ev in events:
            if not ev.data.strip():
                continue
            try:
                data = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    ErrorKind.PROTOCOL, f"gemini sent a malformed stream event: {ev.data[:200]!r}"
                ) from None
            if not isinstance(data, dict):
                raise UpstreamError(ErrorKind.PROTOCOL, "gemini sent a stream event that is not an object")
            if not self._seen:
                self._seen = True
                self._head = b""
                self._id = str(_pick(data, "responseId", "response_id") or self._id)
            if isinstance(data.get("error"), dict):
                raise error_from_gemini(500, {}, ev.data.encode())
            self._model = str(_pick(data, "modelVersion", "model_version") or self._model)
            usage = _pick(data, "usageMetadata", "usage_metadata")
            if isinstance(usage, dict):
                self._usage = usage
            try:
                self._response(data, out)
            except SHAPE_ERRORS as exc:
                raise _odd("a stream event", exc) from None
        return out

    def _response(self, data: JSON, out: list[StreamChunk]) -> None:
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            if _block_reason(data) and 0 not in self._finished:
                self._start(0, out)
                self._finished.add(0)
                out.append(self._chunk(0, {}, "content_filter"))
            return
        for pos, cand in enumerate(candidates):
            index = _index(cand, pos)
            if index in self._finished:
                continue
            self._start(index, out)
            for part in _candidate_parts(cand):
                call = _tool_call(part)
                if call:
                    n = self._tools.get(index, 0)
                    self._tools[index] = n + 1
                    out.append(self._chunk(index, {"tool_calls": [{"index": n, **call}]}))
                elif isinstance(part.get("text"), str) and part["text"]:
                    key = "reasoning_content" if part.get("thought") else "content"
                    out.append(self._chunk(index, {key: part["text"]}))
            reason = _pick(cand, "finishReason", "finish_reason")
            if reason:
                self._finished.add(index)
                out.append(self._chunk(index, {}, finish_reason(reason, bool(self._tools.get(index)))))
