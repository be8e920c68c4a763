"""The OpenAI ingress: the canonical shape already is OpenAI's, so this is mostly checking.

Validation is deliberately shallow — enough that a malformed body gets a 400 naming the field
instead of an upstream error or a 500 — and costs a few dict lookups on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fluxway.canonical import JSON, CanonicalRequest, CanonicalResponse, Endpoint, StreamChunk, Usage
from fluxway.errors import GatewayError, bad_request, missing_field, openai_error_body, wrong_type
from fluxway.ingress.base import bearer_token
from fluxway.mcp.loop_request import has_mcp_tool, split_tools

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _is_stop(v: Any) -> bool:
    return v is None or isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))


# field -> (check, description) for optional top-level fields with a fixed type.
_CHECKS: dict[str, tuple[Any, str]] = {
    "stream": (lambda v: isinstance(v, bool), "a boolean"),
    "temperature": (_is_number, "a number"),
    "top_p": (_is_number, "a number"),
    "frequency_penalty": (_is_number, "a number"),
    "presence_penalty": (_is_number, "a number"),
    "max_tokens": (_is_int, "an integer"),
    "max_completion_tokens": (_is_int, "an integer"),
    "n": (_is_int, "an integer"),
    "seed": (_is_int, "an integer"),
    "top_logprobs": (_is_int, "an integer"),
    "logprobs": (lambda v: isinstance(v, bool | int), "a boolean"),
    "parallel_tool_calls": (lambda v: isinstance(v, bool), "a boolean"),
    "stop": (_is_stop, "a string or a list of strings"),
    "stream_options": (lambda v: v is None or isinstance(v, dict), "an object"),
    "tools": (lambda v: isinstance(v, list), "an array"),
    "tool_choice": (lambda v: isinstance(v, str | dict), "a string or an object"),
    "response_format": (lambda v: isinstance(v, dict) and isinstance(v.get("type"), str), "an object with a 'type'"),
    "user": (lambda v: isinstance(v, str), "a string"),
    "metadata": (lambda v: v is None or isinstance(v, dict), "an object"),
    "logit_bias": (lambda v: v is None or isinstance(v, dict), "an object"),
    "dimensions": (_is_int, "an integer"),
    "encoding_format": (lambda v: isinstance(v, str), "a string"),
}


# field -> (lowest, highest) allowed, as OpenAI's API reference gives them: checked before any
# upstream call so an out-of-range value never costs a provider round trip (or money).
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
    "max_tokens": (1, 2**31 - 1),
    "max_completion_tokens": (1, 2**31 - 1),
    "n": (1, 128),
    "top_logprobs": (0, 20),
    "dimensions": (1, 2**31 - 1),
}


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array of message objects")
    if not messages:
        raise bad_request("'messages' must contain at least one message", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise wrong_type(f"messages[{i}]", "an object")
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            if role is None:
                raise missing_field(f"messages[{i}].role")
            raise bad_request(
                f"'messages[{i}].role' must be one of {', '.join(sorted(_ROLES))}; got {role!r}",
                f"messages[{i}].role",
            )
        content = m.get("content")
        if content is None:
            if role in ("user", "system", "developer", "tool") and "content" not in m:
                raise missing_field(f"messages[{i}].content")
        elif not isinstance(content, str | list):
            raise wrong_type(f"messages[{i}].content", "a string or an array of content parts")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise wrong_type(f"messages[{i}].content[{j}]", "an object with a 'type'")


def parse_openai_body(endpoint: Endpoint, body: bytes) -> CanonicalRequest:
    """Decode and check an OpenAI-shaped request body."""
    if not body:
        raise bad_request("the request body is empty; send a JSON object", code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    model = data.get("model")
    if model is None:
        raise missing_field("model")
    if not isinstance(model, str) or not model:
        raise wrong_type("model", "a non-empty string")
    if endpoint is Endpoint.CHAT:
        if "messages" not in data:
            raise missing_field("messages")
        _check_messages(data["messages"])
    elif endpoint is Endpoint.COMPLETIONS:
        prompt = data.get("prompt")
        if prompt is None:
            raise missing_field("prompt")
        if not isinstance(prompt, str | list):
            raise wrong_type("prompt", "a string or an array")
    else:
        inp = data.get("input")
        if inp is None:
            raise missing_field("input")
        if not isinstance(inp, str | list) or (isinstance(inp, list) and not inp):
            raise wrong_type("input", "a string or a non-empty array")
    for name in _CHECKS.keys() & data.keys():
        value = data[name]
        check, what = _CHECKS[name]
        if value is not None:
            if not check(value):
                raise wrong_type(name, what)
            bounds = _RANGES.get(name)
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                raise bad_request(
                    f"'{name}' must be between {_num(bounds[0])} and {_num(bounds[1])}; got {value!r}", name,
                    code="invalid_value",
                )
    stream = data.get("stream") is True and endpoint is not Endpoint.EMBEDDINGS
    opts = data.get("stream_options")
    include_usage = bool(stream and isinstance(opts, dict) and opts.get("include_usage"))
    tools = data.get("tools")
    if tools and endpoint is Endpoint.CHAT and has_mcp_tool(tools):  # Fluxway's tool loop
        other, entries = split_tools(tools)
        if other:
            data["tools"] = other
        else:
            del data["tools"]
        return CanonicalRequest(endpoint, model, data, stream, include_usage, tuple(entries))
    return CanonicalRequest(endpoint, model, data, stream, include_usage)


class OpenAIStreamEncoder:
    __slots__ = ("_include_usage", "_saw_usage")

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._saw_usage = False

    def chunk(self, chunk: StreamChunk) -> bytes:
        data = chunk.data
        if data.get("usage"):
            if not self._include_usage:
                if not data.get("choices"):
                    return b""
                data = {k: v for k, v in data.items() if k != "usage"}
                return b"data: " + orjson.dumps(data) + b"\n\n"
            self._saw_usage = True
        return b"data: " + (chunk.raw if chunk.raw is not None else orjson.dumps(data)) + b"\n\n"

    def finish(self, usage: Usage | None) -> bytes:
        if self._include_usage and not self._saw_usage and usage is not None:
            # The upstream sent no usage (llama.cpp's server, say): the caller still gets its usage
            # chunk, from Fluxway's own count, marked as such.
            tail: JSON = {"object": "chat.completion.chunk", "choices": [], "usage": usage.to_openai()}
            if usage.estimated:
                tail["x_fluxway"] = {"usage_estimated": True}
            return b"data: " + orjson.dumps(tail) + b"\n\ndata: [DONE]\n\n"
        return b"data: [DONE]\n\n"

    def error(self, err: GatewayError) -> bytes:
        return b"data: " + orjson.dumps(openai_error_body(err)) + b"\n\n"


class OpenAIIngress:
    name = "openai"
    content_type = "application/json"

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        return bearer_token(headers) or headers.get("x-api-key") or None

    def parse(self, endpoint: Endpoint, body: bytes) -> CanonicalRequest:
        return parse_openai_body(endpoint, body)

    def render(self, req: CanonicalRequest, resp: CanonicalResponse) -> bytes:
        if resp.raw is not None:
            return resp.raw
        return orjson.dumps(resp.body)

    def stream_encoder(self, req: CanonicalRequest, request_id: str) -> OpenAIStreamEncoder:
        return OpenAIStreamEncoder(req.include_usage)

    def render_error(self, err: GatewayError) -> bytes:
        return orjson.dumps(openai_error_body(err))

    def extra_headers(self, request_id: str) -> list[tuple[bytes, bytes]]:
        return []
