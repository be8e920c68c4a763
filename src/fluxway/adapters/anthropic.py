"""Anthropic Messages API (``POST /v1/messages``).

Requests: an OpenAI chat body becomes a Messages body (system to the top level, consecutive roles
merged, tool messages to ``tool_result`` blocks, images to ``image`` blocks, ...). Answers and SSE
streams become OpenAI ``chat.completion`` / ``chat.completion.chunk`` dicts. Errors are classified
from Anthropic's ``{"type": "error", "error": {"type", "message"}}`` bodies. Pure: no I/O.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from fluxway.adapters.base import Headers, dumps, kind_for_status, loads_object, openai_chunk, retry_after_seconds
from fluxway.adapters.settings import AnthropicSettings
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

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# max_tokens sent when the caller gives none; the longest matching model-name prefix wins.
MAX_TOKENS_BY_PREFIX: tuple[tuple[str, int], ...] = (
    ("claude-3-5", 8192),
    ("claude-3-7", 16384),
    ("claude-3", 4096),
    ("claude-haiku-4", 16384),
    ("claude-sonnet-4", 16384),
    ("claude-opus-4", 16384),
)
# reasoning_effort -> thinking.budget_tokens (Anthropic's minimum budget is 1024).
THINKING_BUDGET = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
# The tool forced when JSON output cannot use output_config.format (json_object, or claude-3 models).
JSON_TOOL = "json_response"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
    # The turn was paused (long server-tool work) and is incomplete: send it back to continue.
    "pause_turn": "length",
}

_ERROR_KINDS = {
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "billing_error": ErrorKind.AUTH,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.CONTEXT_LENGTH,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "timeout_error": ErrorKind.TIMEOUT,
    "api_error": ErrorKind.UPSTREAM_5XX,
    "overloaded_error": ErrorKind.OVERLOADED,
}


# What a body of an unexpected shape raises in translation code (orjson's encode error is a TypeError).
SHAPE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)


def _bad(message: str) -> UpstreamError:
    return UpstreamError(ErrorKind.BAD_REQUEST, message, status=400)


def _odd(what: str, exc: BaseException) -> UpstreamError:
    return UpstreamError(ErrorKind.PROTOCOL, f"anthropic sent {what} of an unexpected shape ({exc!r:.200})")


# ---------------------------------------------------------------------------------------------
# Request: OpenAI chat body -> Anthropic Messages body


def default_max_tokens(model: str) -> int:
    best = ("", DEFAULT_MAX_TOKENS)
    for prefix, value in MAX_TOKENS_BY_PREFIX:
        if model.startswith(prefix) and len(prefix) > len(best[0]):
            best = (prefix, value)
    return best[1]


def uses_json_tool(body: JSON, model: str) -> bool:
    """Is JSON output obtained through a forced tool (whose input becomes the answer's content)?

    ``json_schema`` uses ``output_config.format``, except on claude-3 models that predate it;
    ``json_object`` has no native equivalent and uses the tool unless the caller brought tools.
    """
    rf = body.get("response_format")
    if not isinstance(rf, dict) or body.get("tools"):
        return False
    kind = rf.get("type")
    return kind == "json_object" or (kind == "json_schema" and model.startswith("claude-3"))


def _parse_data_uri(url: str) -> tuple[str, str] | None:
    """``data:<media>;base64,<data>`` -> (media type, data); None for anything else."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or ";base64" not in header:
        return None
    return header.split(";", 1)[0] or "application/octet-stream", data


def _image_block(part: JSON, where: str) -> JSON:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}.image_url.url: expected a URL string")
    parsed = _parse_data_uri(url)
    if parsed:
        media, data = parsed
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{where}.image_url.url: only base64 data: URIs and http(s) URLs are supported")


def _file_block(part: JSON, where: str) -> JSON:
    f = part.get("file")
    data = f.get("file_data") if isinstance(f, dict) else None
    parsed = _parse_data_uri(data) if isinstance(data, str) else None
    if not parsed:
        raise _bad(f"{where}.file: anthropic takes files as base64 data: URIs in file_data (no file_id)")
    media, payload = parsed
    block: JSON = {"type": "document", "source": {"type": "base64", "media_type": media, "data": payload}}
    if isinstance(f, dict) and f.get("filename"):
        block["title"] = f["filename"]
    return block


def _content_blocks(content: Any, where: str, *, allow_media: bool) -> list[JSON]:
    """OpenAI message content (string or parts) -> Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content: expected a string or a list of parts")
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        pwhere = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise _bad(f"{pwhere}: expected an object")
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise _bad(f"{pwhere}.{kind}: expected a string")
            block: JSON = {"type": "text", "text": text}
        elif kind == "image_url" and allow_media:
            block = _image_block(part, pwhere)
        elif kind == "file" and allow_media:
            block = _file_block(part, pwhere)
        else:
            raise _bad(f"{pwhere}.type: content part '{kind}' is not supported by anthropic here")
        if part.get("cache_control"):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use_blocks(tool_calls: Any, where: str) -> list[JSON]:
    if not isinstance(tool_calls, list):
        raise _bad(f"{where}.tool_calls: expected a list")
    out: list[JSON] = []
    for j, call in enumerate(tool_calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"{where}.tool_calls[{j}]: expected a function call with a name")
        args = fn.get("arguments") or "{}"
        try:
            parsed = orjson.loads(args) if isinstance(args, str) else args
        except orjson.JSONDecodeError:
            raise _bad(f"{where}.tool_calls[{j}].function.arguments: not valid JSON") from None
        if not isinstance(parsed, dict):
            raise _bad(f"{where}.tool_calls[{j}].function.arguments: must encode a JSON object")
        out.append({"type": "tool_use", "id": str(call.get("id") or f"toolu_{j}"), "name": fn["name"], "input": parsed})
    return out


def _assistant_blocks(m: JSON, where: str) -> list[JSON]:
    blocks: list[JSON] = []
    # Thinking blocks (with their signatures) returned earlier must lead the assistant turn.
    thinking = m.get("thinking_blocks")
    if isinstance(thinking, list):
        blocks.extend(b for b in thinking if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking"))
    blocks.extend(_content_blocks(m.get("content"), where, allow_media=False))
    if m.get("tool_calls"):
        blocks.extend(_tool_use_blocks(m["tool_calls"], where))
    return blocks


def _tool_result_block(m: JSON, where: str) -> JSON:
    call_id = m.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_call_id: a tool message needs the id of the call it answers")
    block: JSON = {"type": "tool_result", "tool_use_id": call_id}
    content = m.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        parts = [b for b in _content_blocks(content, where, allow_media=True) if b.get("type") != "text" or b["text"]]
        if parts:
            block["content"] = parts
    return block


def _append(out: list[JSON], role: str, blocks: list[JSON]) -> None:
    """Add a turn, dropping empty text and merging into the previous turn of the same role."""
    blocks = [b for b in blocks if b.get("type") != "text" or b["text"].strip()]
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def _text_of(blocks: list[JSON]) -> str:
    return "\n".join(b["text"] for b in blocks if b.get("type") == "text")


def convert_messages(messages: Any) -> tuple[list[JSON], list[JSON]]:
    """OpenAI messages -> (system text blocks, Anthropic messages)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: expected a non-empty list")
    system: list[JSON] = []
    out: list[JSON] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where}: expected an object")
        role = m.get("role")
        if role in ("system", "developer"):
            blocks = _content_blocks(m.get("content"), where, allow_media=False)
            if not out:
                system.extend(b for b in blocks if b["text"].strip())
            elif text := _text_of(blocks).strip():
                # Anthropic has no mid-conversation system turn: keep it, clearly marked, in place.
                _append(out, "user", [{"type": "text", "text": f"<system>\n{text}\n</system>"}])
        elif role == "user":
            _append(out, "user", _content_blocks(m.get("content"), where, allow_media=True))
        elif role == "assistant":
            _append(out, "assistant", _assistant_blocks(m, where))
        elif role == "tool":
            _append(out, "user", [_tool_result_block(m, where)])
        else:
            raise _bad(f"{where}.role: role '{role}' is not supported by anthropic")
    if out and out[-1]["role"] == "assistant":
        # A final assistant turn (a prefill) may not end with whitespace.
        last = out[-1]["content"]
        if last and last[-1].get("type") == "text":
            last[-1]["text"] = last[-1]["text"].rstrip()
    if not out:
        raise _bad("messages: nothing to send besides system messages")
    for turn in out:
        content = turn["content"]
        if len(content) == 1 and content[0].get("type") == "text" and len(content[0]) == 2:
            turn["content"] = content[0]["text"]
    return system, out


def _history_tool_names(messages: list[JSON]) -> list[str]:
    names: list[str] = []
    for turn in messages:
        if isinstance(turn["content"], list):
            for b in turn["content"]:
                if b.get("type") == "tool_use" and b["name"] not in names:
                    names.append(b["name"])
    return names


def _has_tool_blocks(messages: list[JSON]) -> bool:
    return any(
        b.get("type") in ("tool_use", "tool_result")
        for turn in messages
        if isinstance(turn["content"], list)
        for b in turn["content"]
    )


def convert_tools(tools: Any) -> list[JSON]:
    if not isinstance(tools, list):
        raise _bad("tools: expected a list")
    out: list[JSON] = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _bad(f"tools[{i}]: only function tools are supported by anthropic")
        if not isinstance(fn.get("name"), str):
            raise _bad(f"tools[{i}].function.name: required")
        tool: JSON = {"name": fn["name"]}
        if fn.get("description"):
            tool["description"] = fn["description"]
        params = fn.get("parameters")
        tool["input_schema"] = params if isinstance(params, dict) else {"type": "object", "properties": {}}
        if fn.get("strict") is True:
            tool["strict"] = True
        if t.get("cache_control"):
            tool["cache_control"] = t["cache_control"]
        out.append(tool)
    return out


def convert_tool_choice(choice: Any, tools: list[JSON]) -> tuple[JSON | None, list[JSON]]:
    """OpenAI tool_choice -> (Anthropic tool_choice, the tools to send)."""
    if choice is None:
        return None, tools
    if choice == "auto":
        return {"type": "auto"}, tools
    if choice == "required":
        return {"type": "any"}, tools
    if choice == "none":
        return {"type": "none"}, tools
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function":
            fn = choice.get("function")
            name = fn.get("name") if isinstance(fn, dict) else None
            if isinstance(name, str):
                return {"type": "tool", "name": name}, tools
        elif kind == "allowed_tools":
            spec = choice.get("allowed_tools")
            if isinstance(spec, dict) and isinstance(spec.get("tools"), list):
                names = {
                    t["function"]["name"]
                    for t in spec["tools"]
                    if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
                }
                allowed = [t for t in tools if t["name"] in names]
                return {"type": "any" if spec.get("mode") == "required" else "auto"}, allowed
    raise _bad("tool_choice: expected auto, required, none or a function")


def _thinking(body: JSON) -> JSON | None:
    native = body.get("thinking")
    if isinstance(native, dict):
        return dict(native)
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return None
    budget = THINKING_BUDGET.get(str(effort))
    if budget is None:
        raise _bad(f"reasoning_effort: unknown value {effort!r}")
    return {"type": "enabled", "budget_tokens": budget}


def build_body(body: JSON, model: str, stream: bool) -> JSON:
    """The Anthropic Messages body for one OpenAI chat body (which is left untouched)."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise _bad("n: anthropic returns one choice per request")
    system, messages = convert_messages(body.get("messages"))
    out: JSON = {"model": model, "messages": messages}

    explicit_max = body.get("max_completion_tokens") or body.get("max_tokens")
    max_tokens = int(explicit_max) if explicit_max else default_max_tokens(model)

    tools = convert_tools(body["tools"]) if body.get("tools") else []
    tool_choice, tools = convert_tool_choice(body.get("tool_choice"), tools)
    json_tool = uses_json_tool(body, model)
    rf = body.get("response_format")
    if json_tool:
        schema: Any = {"type": "object"}
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema") or schema
        tools = [{"name": JSON_TOOL, "description": "Give the answer as this tool's input.", "input_schema": schema}]
        tool_choice = {"type": "tool", "name": JSON_TOOL}
    elif isinstance(rf, dict) and rf.get("type") == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise _bad("response_format.json_schema.schema: required")
        out["output_config"] = {"format": {"type": "json_schema", "schema": spec["schema"]}}
    elif isinstance(rf, dict) and rf.get("type") == "json_object":
        # Tools were given, so no forced tool: ask in words.
        system.append({"type": "text", "text": "Respond with a single valid JSON object and nothing else."})

    if not tools and _has_tool_blocks(messages):
        # Anthropic rejects tool_use/tool_result history without tool definitions: declare the
        # tools the history used, and let the model call none of them.
        names = _history_tool_names(messages) or ["unavailable_tool"]
        tools = [{"name": nm, "description": "(no longer offered)", "input_schema": {"type": "object"}} for nm in names]
        tool_choice = {"type": "none"}
    if body.get("parallel_tool_calls") is False and tools:
        tool_choice = {**(tool_choice or {"type": "auto"})}
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True

    thinking = _thinking(body)
    if thinking and thinking.get("type") == "enabled":
        if tool_choice and tool_choice["type"] in ("any", "tool"):
            thinking = None  # Anthropic rejects thinking with a forced tool; the forced tool wins.
        else:
            budget = int(thinking.get("budget_tokens") or 1024)
            if not explicit_max:
                max_tokens = max(max_tokens, budget + DEFAULT_MAX_TOKENS)
            elif max_tokens <= budget:
                budget = max_tokens - 1
            if budget < 1024:
                thinking = None
            else:
                thinking["budget_tokens"] = budget

    out["max_tokens"] = max_tokens
    if system:
        plain = all(len(b) == 2 for b in system)
        out["system"] = "\n\n".join(b["text"] for b in system) if plain else system
    if tools:
        out["tools"] = tools
    if tool_choice:
        out["tool_choice"] = tool_choice
    if thinking:
        out["thinking"] = thinking

    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = list(stop)
    thinking_on = thinking is not None and thinking.get("type") != "disabled"
    if body.get("temperature") is not None and not thinking_on:
        out["temperature"] = min(float(body["temperature"]), 1.0)
    top_p = body.get("top_p")
    if top_p is not None and (not thinking_on or float(top_p) >= 0.95):
        out["top_p"] = top_p
    if body.get("top_k") is not None and not thinking_on:
        out["top_k"] = body["top_k"]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if stream:
        out["stream"] = True
    return out


# ---------------------------------------------------------------------------------------------
# Answers: Anthropic message -> OpenAI chat.completion


def usage_from_anthropic(u: Any) -> tuple[JSON, Usage]:
    """Anthropic usage -> (OpenAI usage dict, canonical Usage). Prompt tokens include cache tokens."""
    u = u if isinstance(u, dict) else {}
    read = int(u.get("cache_read_input_tokens") or 0)
    created = int(u.get("cache_creation_input_tokens") or 0)
    prompt = int(u.get("input_tokens") or 0) + read + created
    completion = int(u.get("output_tokens") or 0)
    details = u.get("output_tokens_details")
    reasoning = int(details.get("thinking_tokens") or 0) if isinstance(details, dict) else 0
    out: JSON = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if read or created:
        out["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": created}
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out, Usage(prompt, completion, cached_tokens=read, reasoning_tokens=reasoning)


def _finish(stop_reason: Any, json_tool: bool) -> str:
    reason = FINISH_REASONS.get(str(stop_reason), "stop")
    return "stop" if json_tool and reason == "tool_calls" else reason


def response_from_anthropic(data: JSON, model: str, json_tool: bool) -> tuple[JSON, Usage]:
    content = data.get("content")
    if not isinstance(content, list):
        raise UpstreamError(ErrorKind.PROTOCOL, "anthropic response has no 'content' list")
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[JSON] = []
    tool_calls: list[JSON] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use" and json_tool and block.get("name") == JSON_TOOL:
            texts.append(dumps(block.get("input") or {}).decode())
        elif kind == "tool_use":
            args = dumps(block.get("input") if block.get("input") is not None else {}).decode()
            tool_calls.append(
                {"id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": args}}
            )
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
            thinking_blocks.append(block)
        elif kind == "redacted_thinking":
            thinking_blocks.append(block)
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    usage, canonical = usage_from_anthropic(data.get("usage"))
    finish = _finish(data.get("stop_reason"), json_tool)
    if finish == "tool_calls" and not tool_calls:
        finish = "stop"
    body: JSON = {
        "id": str(data.get("id") or "msg"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(data.get("model") or model),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }
    return body, canonical


# ---------------------------------------------------------------------------------------------
# Errors


def error_from_anthropic(status: int, headers: Headers, body: bytes) -> UpstreamError:
    message = ""
    etype = ""
    parsed: JSON | None = None
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        parsed = data
        err = data.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            etype = str(err.get("type") or "")
        elif isinstance(err, str):
            message = err
    if not message:
        message = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    kind = _ERROR_KINDS.get(etype) or kind_for_status(status, message, etype)
    generic = kind_for_status(status, message, etype)
    if kind is ErrorKind.BAD_REQUEST and generic is ErrorKind.CONTEXT_LENGTH:
        kind = ErrorKind.CONTEXT_LENGTH
    if kind is ErrorKind.RATE_LIMITED and isinstance(data, dict):
        details = data["error"].get("details") if isinstance(data.get("error"), dict) else None
        if isinstance(details, dict) and "spend_limit" in str(details.get("error_code") or ""):
            kind = ErrorKind.AUTH  # a spend limit: waiting will not help, another key or provider may
    return UpstreamError(kind, message, status=status, retry_after=retry_after_seconds(headers), body=parsed)


# ---------------------------------------------------------------------------------------------
# The adapter


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
            raise _bad(f"anthropic does not serve the {req.endpoint.value} endpoint")
        headers = dict(self.static_headers)
        if creds.api_key:
            headers["x-api-key"] = creds.api_key
        if req.stream:
            headers["accept"] = "text/event-stream"
        try:
            payload = dumps(build_body(req.body, target.model, req.stream))
        except SHAPE_ERRORS as exc:
            raise _bad(f"the request cannot be translated for anthropic ({exc!r:.200})") from None
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
            raise _odd("an answer", exc) from None
        return CanonicalResponse(out, usage)

    def stream_decoder(self, req: CanonicalRequest, target: Target) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(
            target.model, uses_json_tool(req.body, target.model), self.cfg.max_event_bytes
        )

    def classify_error(self, status: int, headers: Headers, body: bytes) -> UpstreamError:
        return error_from_anthropic(status, headers, body)


class AnthropicStreamDecoder:
    """Anthropic SSE events -> OpenAI chunks: a role chunk, deltas, a finish chunk, a usage chunk."""

    __slots__ = (
        "_created",
        "_finish",
        "_id",
        "_json_tool",
        "_model",
        "_sse",
        "_started",
        "_stopped",
        "_tool_index",
        "_tools",
        "_usage",
    )

    def __init__(self, model: str, json_tool: bool = False, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._sse = SSEDecoder(max_event_bytes)
        self._model = model
        self._json_tool = json_tool
        self._id = "msg"
        self._created = int(time.time())
        self._started = False
        self._stopped = False
        self._finish: str | None = None
        self._usage: JSON = {}
        self._tools: dict[int, int] = {}  # content block index -> tool_calls index (-1: the JSON tool)
        self._tool_index = 0

    def feed(self, data: bytes) -> list[StreamChunk]:
        return self._events(self._sse.feed(data))

    def close(self) -> list[StreamChunk]:
        out = self._events(self._sse.flush())
        if not self._stopped:
            raise UpstreamError(ErrorKind.PROTOCOL, "anthropic stream ended before message_stop")
        return out

    def _chunk(self, delta: JSON, finish: str | None = None) -> StreamChunk:
        return openai_chunk(self._id, self._created, self._model, delta, finish)

    def _start(self, out: list[StreamChunk]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def _events(self, events: list[Any]) -> list[StreamChunk]:
        out: list[StreamChunk] = []
        for ev in events:
            if self._stopped or not ev.data:
                continue
            try:
                data = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    ErrorKind.PROTOCOL, f"anthropic sent a malformed stream event: {ev.data[:200]!r}"
                ) from None
            if not isinstance(data, dict):
                raise UpstreamError(ErrorKind.PROTOCOL, "anthropic sent a stream event that is not an object")
            try:
                self._event(str(data.get("type") or ev.event or ""), data, out)
            except SHAPE_ERRORS as exc:
                raise _odd("a stream event", exc) from None
        return out

    def _event(self, kind: str, data: JSON, out: list[StreamChunk]) -> None:
        if kind == "message_start":
            msg: JSON = data["message"] if isinstance(data.get("message"), dict) else {}
            self._id = str(msg.get("id") or self._id)
            self._model = str(msg.get("model") or self._model)
            if isinstance(msg.get("usage"), dict):
                self._usage.update(msg["usage"])
            self._start(out)
        elif kind == "content_block_start":
            self._start(out)
            self._block_start(int(data.get("index") or 0), data.get("content_block") or {}, out)
        elif kind == "content_block_delta":
            self._start(out)
            self._block_delta(int(data.get("index") or 0), data.get("delta") or {}, out)
        elif kind == "message_delta":
            self._start(out)
            if isinstance(data.get("usage"), dict):
                self._usage.update({k: v for k, v in data["usage"].items() if v is not None})
            delta: JSON = data["delta"] if isinstance(data.get("delta"), dict) else {}
            if delta.get("stop_reason") and self._finish is None:
                finish = _finish(delta["stop_reason"], self._json_tool)
                if finish == "tool_calls" and not self._tool_index:
                    finish = "stop"
                self._finish = finish
                out.append(self._chunk({}, finish))
        elif kind == "message_stop":
            self._start(out)
            if self._finish is None:
                self._finish = "stop"
                out.append(self._chunk({}, "stop"))
            usage, _ = usage_from_anthropic(self._usage)
            out.append(openai_chunk(self._id, self._created, self._model, usage=usage))
            self._stopped = True
        elif kind == "error":
            raise error_from_anthropic(529 if "overloaded" in str(data) else 500, {}, dumps(data))
        # ping, content_block_stop and unknown events carry nothing for an OpenAI client.

    def _block_start(self, index: int, block: JSON, out: list[StreamChunk]) -> None:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking" and block.get("thinking"):
            out.append(self._chunk({"reasoning_content": block["thinking"]}))
        elif kind == "tool_use" and self._json_tool and block.get("name") == JSON_TOOL:
            self._tools[index] = -1
        elif kind == "tool_use":
            i = self._tool_index
            self._tool_index += 1
            self._tools[index] = i
            args = dumps(block["input"]).decode() if block.get("input") else ""
            call = {
                "index": i,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": args},
            }
            out.append(self._chunk({"tool_calls": [call]}))

    def _block_delta(self, index: int, delta: JSON, out: list[StreamChunk]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            if delta.get("text"):
                out.append(self._chunk({"content": delta["text"]}))
        elif kind == "thinking_delta":
            if delta.get("thinking"):
                out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            tool = self._tools.get(index)
            if not fragment or tool is None:
                return
            if tool == -1:
                out.append(self._chunk({"content": fragment}))
            else:
                out.append(self._chunk({"tool_calls": [{"index": tool, "function": {"arguments": fragment}}]}))
        # signature_delta and citations_delta have no OpenAI counterpart.
