"""Translation helpers that more than one adapter uses: one place for each, so no adapter borrows
from another's module.

The seam itself (:class:`~fluxway.adapters.base.Adapter`) and the generic JSON / status / chunk
helpers stay in :mod:`fluxway.adapters.base`; what is here is about OpenAI-shaped request and answer
pieces: errors for bad requests and odd answers, data: URIs, tools and tool calls, assistant messages
and ``chat.completion`` bodies, finish-reason tables, error bodies, stream events and embeddings.
Pure functions, no state.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import orjson

from fluxway.adapters.base import Headers, kind_for_status, retry_after_seconds
from fluxway.canonical import JSON, Endpoint, ErrorKind, UpstreamError

# What a body of an unexpected shape raises in translation code (orjson's encode error is a TypeError;
# struct.error comes from packing a vector that holds something other than numbers).
SHAPE_ERRORS: tuple[type[Exception], ...] = (
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
    OverflowError,
    struct.error,
)
# Where the OpenAI wire format serves each endpoint, below the API root (OpenAI-compatible and Azure).
OPENAI_PATHS: Mapping[Endpoint, str] = MappingProxyType(
    {
        Endpoint.CHAT: "/chat/completions",
        Endpoint.COMPLETIONS: "/completions",
        Endpoint.EMBEDDINGS: "/embeddings",
    }
)
# The tool forced when JSON output has no native switch; its input becomes the answer's content.
JSON_TOOL = "json_response"


# ---------------------------------------------------------------------------------------------
# Errors of translation


def bad_request(message: str) -> UpstreamError:
    """A request the provider cannot take (a 400 to the client, no failover)."""
    return UpstreamError(ErrorKind.BAD_REQUEST, message, status=400)


def odd_shape(provider: str, what: str, exc: BaseException) -> UpstreamError:
    """An upstream answer (or event) whose shape translation code did not expect."""
    return UpstreamError(ErrorKind.PROTOCOL, f"{provider} sent {what} of an unexpected shape ({exc!r:.200})")


# ---------------------------------------------------------------------------------------------
# Request pieces


def max_tokens_of(body: JSON) -> Any:
    """The caller's output-token limit (``max_completion_tokens`` before the older ``max_tokens``)."""
    return body.get("max_completion_tokens") or body.get("max_tokens")


def stop_list(stop: Any) -> list[Any] | None:
    """OpenAI ``stop`` (a string or a list) as a list; None when there is none."""
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and stop:
        return list(stop)
    return None


def parse_data_uri(url: str) -> tuple[str, str] | None:
    """``data:<media>;base64,<data>`` -> (media type, data); None for anything else."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or ";base64" not in header:
        return None
    return header.split(";", 1)[0] or "application/octet-stream", data


def content_parts(content: Any, where: str) -> Iterator[tuple[str, JSON, Any]]:
    """(where, part, its type) for each part of a message's list content, each checked to be an object.

    Lazy: a part is checked only once the one before it has been translated."""
    if not isinstance(content, list):
        raise bad_request(f"{where}.content: expected a string or a list of parts")
    for j, part in enumerate(content):
        pwhere = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise bad_request(f"{pwhere}: expected an object")
        yield pwhere, part, part.get("type")


def part_text(part: JSON, kind: str, where: str) -> str:
    """The string of a ``text`` or ``refusal`` content part."""
    text = part.get(kind)
    if not isinstance(text, str):
        raise bad_request(f"{where}.{kind}: expected a string")
    return text


def image_url_of(part: JSON) -> Any:
    """The URL of an ``image_url`` content part (``{"url": ...}`` or, leniently, the URL itself)."""
    image = part.get("image_url")
    return image.get("url") if isinstance(image, dict) else image


def json_schema_of(response_format: JSON) -> JSON:
    """The schema of a ``{"type": "json_schema", "json_schema": {"schema": ...}}`` response_format."""
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise bad_request("response_format.json_schema.schema: required")
    schema: JSON = spec["schema"]
    return schema


def empty_object_schema() -> JSON:
    """The parameters schema of a tool that declares none (a fresh dict each time)."""
    return {"type": "object", "properties": {}}


def function_tools(tools: Any, provider: str) -> list[tuple[JSON, JSON]]:
    """(tool, its ``function``) for each OpenAI tool, checked: function tools with a name only."""
    if not isinstance(tools, list):
        raise bad_request("tools: expected a list")
    out: list[tuple[JSON, JSON]] = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not isinstance(fn, dict):
            raise bad_request(f"tools[{i}]: only function tools are supported by {provider}")
        if not isinstance(fn.get("name"), str):
            raise bad_request(f"tools[{i}].function.name: required")
        out.append((t, fn))
    return out


def tool_calls_list(tool_calls: Any, where: str) -> list[Any]:
    """An assistant message's ``tool_calls``, which must be a list."""
    if not isinstance(tool_calls, list):
        raise bad_request(f"{where}.tool_calls: expected a list")
    return tool_calls


def function_call(call: Any, where: str) -> tuple[str, Any]:
    """(function name, parsed arguments) of one OpenAI tool call; ``where`` names the call."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise bad_request(f"{where}: expected a function call with a name")
    args = fn.get("arguments") or "{}"
    try:
        parsed = orjson.loads(args) if isinstance(args, str) else args
    except orjson.JSONDecodeError:
        raise bad_request(f"{where}.function.arguments: not valid JSON") from None
    return fn["name"], parsed


def named_function(choice: JSON) -> str | None:
    """The name in a ``{"type": "function", "function": {"name": ...}}`` tool_choice, else None."""
    if choice.get("type") != "function":
        return None
    fn = choice.get("function")
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) else None


def allowed_tools(choice: JSON) -> tuple[list[str], bool] | None:
    """(tool names, whether a call is required) of an ``allowed_tools`` tool_choice, else None."""
    spec = choice.get("allowed_tools")
    if choice.get("type") != "allowed_tools" or not isinstance(spec, dict) or not isinstance(spec.get("tools"), list):
        return None
    names = [
        t["function"]["name"]
        for t in spec["tools"]
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
    ]
    return names, spec.get("mode") == "required"


# ---------------------------------------------------------------------------------------------
# Answer pieces


def tool_call(id_: Any, name: Any, arguments: str) -> JSON:
    """One OpenAI ``tool_calls`` entry of an answer."""
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_call_start(index: int, id_: Any, name: Any, arguments: str = "") -> JSON:
    """A stream delta that opens tool call ``index``."""
    return {"tool_calls": [{"index": index, **tool_call(id_, name, arguments)}]}


def arguments_delta(index: int, fragment: str) -> JSON:
    """A stream delta that adds ``fragment`` to the arguments of tool call ``index``."""
    return {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}


def assistant_message(
    content: str | None,
    tool_calls: list[JSON],
    reasoning: list[str],
    thinking_blocks: list[JSON] | None = None,
    *,
    refusal: bool = False,
) -> JSON:
    """An answer's assistant message; ``refusal`` adds the OpenAI ``"refusal": null`` field."""
    message: JSON = {"role": "assistant", "content": content}
    if refusal:
        message["refusal"] = None
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    return message


def chat_choice(index: int, message: JSON, finish: str) -> JSON:
    return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}


def chat_completion(id_: str, created: int, model: str, choices: list[JSON], usage: JSON | None) -> JSON:
    """An OpenAI ``chat.completion`` body (without ``usage`` when it is None)."""
    body: JSON = {"id": id_, "object": "chat.completion", "created": created, "model": model, "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return body


def mapped_finish(table: Mapping[str, str], reason: Any, json_tool: bool = False) -> str:
    """A provider stop reason through ``table`` (default "stop"); the forced JSON tool's call is a stop."""
    mapped = table.get(str(reason), "stop")
    return "stop" if json_tool and mapped == "tool_calls" else mapped


# ---------------------------------------------------------------------------------------------
# Error bodies and stream events


def json_or_none(body: bytes) -> Any:
    """An error body as JSON, or None when it is empty or not JSON."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def fallback_message(status: int, body: bytes) -> str:
    """The error message when the body names none: its start, else ``HTTP <status>``."""
    return body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"


def error_from_openai_body(status: int, headers: Headers, body: bytes, *, prefix: str = "") -> UpstreamError:
    """Classify an OpenAI-shaped error body (``{"error": {"message", "type", "code", "param"}}``)."""
    message = ""
    code = ""
    parsed: JSON | None = None
    data = json_or_none(body)
    if isinstance(data, dict):
        parsed = data
        err = data.get("error", data)
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or "")
            code = str(err.get("code") or err.get("type") or "")
        elif isinstance(err, str):
            message = err
        if not message and isinstance(data.get("message"), str):
            message = data["message"]
    if not message:
        message = fallback_message(status, body)
    kind = kind_for_status(status, message, code)
    return UpstreamError(
        kind,
        prefix + message,
        status=status,
        retry_after=retry_after_seconds(headers),
        body=parsed,
    )


def stream_event(text: str, provider: str) -> JSON:
    """One SSE event's data as a JSON object, or a PROTOCOL error naming ``provider``."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise UpstreamError(ErrorKind.PROTOCOL, f"{provider} sent a malformed stream event: {text[:200]!r}") from None
    if not isinstance(data, dict):
        raise UpstreamError(ErrorKind.PROTOCOL, f"{provider} sent a stream event that is not an object")
    return data


# ---------------------------------------------------------------------------------------------
# Embeddings


def embedding_texts(
    body: JSON, message: str = "'input' must be a string or a non-empty list of strings for this provider"
) -> list[str]:
    """OpenAI ``input`` as a list of strings (token-id inputs are not supported by these providers)."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise bad_request(message)


def float32_base64(values: Sequence[float]) -> str:
    """A vector as OpenAI's ``encoding_format: base64`` (little-endian float32)."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def openai_embeddings(vectors: Sequence[Sequence[float]], model: str, prompt_tokens: int, body: JSON) -> JSON:
    """An OpenAI embeddings list; base64 (little-endian float32) when the caller asked for it."""
    as_b64 = body.get("encoding_format") == "base64"
    data: list[JSON] = []
    for i, vec in enumerate(vectors):
        emb: Any = float32_base64(vec) if as_b64 else [float(x) for x in vec]
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return embeddings_list(data, model, prompt_tokens)


def embeddings_list(data: list[JSON], model: str, prompt_tokens: int) -> JSON:
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def cohere_embed_fields(texts: list[str], body: JSON) -> JSON:
    """The body of a Cohere embed request (Cohere's API, or Cohere models on Bedrock), model aside."""
    return {"texts": texts, "input_type": body.get("input_type") or "search_document", "embedding_types": ["float"]}


def cohere_embed_vectors(data: JSON) -> list[list[float]]:
    """Float vectors from a Cohere embed answer (``embeddings`` by type, or the plain float list)."""
    emb = data.get("embeddings")
    if isinstance(emb, dict):
        emb = emb.get("float")
    if not isinstance(emb, list) or not all(isinstance(v, list) for v in emb):
        raise UpstreamError(ErrorKind.PROTOCOL, "Cohere embed answer has no float embeddings")
    return emb
