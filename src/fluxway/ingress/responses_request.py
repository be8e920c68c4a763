"""OpenAI Responses API requests (``POST /v1/responses``) -> the canonical (Chat Completions) request.

Pure translation: :func:`parse_responses_request` checks the body (a 400 naming the field, in
OpenAI's shape, for anything malformed or not supported) and returns a :class:`ResponsesCall`: the
canonical request plus what the Response object echoes and what the store keeps. Input items are
normalised to the Responses item shape (with ids) so a stored conversation reads back as items;
:func:`items_to_messages` turns items (the caller's, or a previous response's history) into chat
messages.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from fluxway.canonical import JSON, CanonicalRequest, Endpoint
from fluxway.errors import GatewayError, bad_request, missing_field, wrong_type
from fluxway.mcp.loop_request import McpToolEntry, function_name, parse_mcp_entry
from fluxway.thinking import blocks_from_encrypted

# Top-level fields this ingress reads; everything else is refused, naming it. The second group is
# accepted and echoed (or ignored) but has no effect on the call.
_FIELDS = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens",
        "temperature", "top_p", "metadata", "store", "stream", "parallel_tool_calls", "user",
        "previous_response_id", "stream_options",
        "include", "truncation", "service_tier", "top_logprobs", "safety_identifier", "prompt_cache_key",
        "prompt_cache_retention", "max_tool_calls", "background", "conversation", "prompt",
    }
)
# Accepted only when null/false/empty: Fluxway does not run these.
_UNSUPPORTED = {
    "background": "background responses are not supported by Fluxway; send background: false",
    "conversation": "conversations are not supported by Fluxway; chain turns with previous_response_id",
    "prompt": "stored OpenAI prompts are not supported by Fluxway; use Fluxway's prompt APIs (/v1/prompts/{name})",
}
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_ROLES = frozenset({"user", "assistant", "system", "developer"})
# Echoed into the Response object, so held to the values OpenAI's Response schema allows there.
_TRUNCATIONS = ("auto", "disabled")
_SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
_VERBOSITIES = ("low", "medium", "high")
_SUMMARIES = ("auto", "concise", "detailed")
_ITEM_STATUSES = ("in_progress", "completed", "incomplete")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(slots=True)
class ResponsesCall:
    """One ``POST /v1/responses``: the canonical request and what its Response object echoes."""

    request: CanonicalRequest
    input: list[JSON]  # this turn's input items, normalised (ids given)
    instructions: str | None
    previous_response_id: str | None
    store: bool
    echo: JSON  # the request's fields as the Response object repeats them
    messages: list[JSON] = field(default_factory=list)  # this turn's chat messages (after history)
    history: list[Any] = field(default_factory=list)  # the previous response's conversation, as items


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _opt_bool(data: JSON, name: str) -> bool | None:
    v = data.get(name)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise wrong_type(name, "a boolean")
    return v


def _range(data: JSON, name: str, lo: float, hi: float) -> float | None:
    v = data.get(name)
    if v is None:
        return None
    if not _is_number(v):
        raise wrong_type(name, "a number")
    if not lo <= v <= hi:
        raise bad_request(f"'{name}' must be between {lo:g} and {hi:g}; got {v!r}", name, code="invalid_value")
    return float(v)


def _one_of(value: Any, param: str, allowed: tuple[str, ...]) -> Any:
    """``value`` when null or one of ``allowed``, else a 400 naming ``param``."""
    if value is not None and value not in allowed:
        raise bad_request(f"'{param}' must be one of {', '.join(allowed)}; got {value!r}", param, code="invalid_value")
    return value


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise wrong_type(param, "a string")
    return value


# -- input items ---------------------------------------------------------------------------------


def _image_part(part: JSON, param: str) -> JSON:
    url = part.get("image_url")
    if part.get("file_id") is not None and url is None:
        raise bad_request(f"'{param}.file_id': uploaded files are not supported; send image_url (a URL or a data: URI)",
                          f"{param}.file_id")
    if not isinstance(url, str) or not url:
        raise missing_field(f"{param}.image_url")
    image: JSON = {"url": url}
    detail = part.get("detail")
    if detail is not None:
        if detail not in ("auto", "low", "high", "original"):
            raise bad_request(f"'{param}.detail' must be auto, low or high; got {detail!r}", f"{param}.detail")
        if detail != "original":
            image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _file_part(part: JSON, param: str) -> JSON:
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        if part.get("file_id") is not None or part.get("file_url") is not None:
            raise bad_request(f"'{param}': only inline files (file_data) are supported", f"{param}.file_data")
        raise missing_field(f"{param}.file_data")
    file: JSON = {"file_data": data}
    if isinstance(part.get("filename"), str):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _text_part(text: str, role: str, part: JSON) -> JSON:
    """A text part as the item schema has it: ``output_text`` in an assistant message (with its
    ``annotations`` and ``logprobs``), ``input_text`` in any other."""
    if role != "assistant":
        return {"type": "input_text", "text": text}
    annotations, logprobs = part.get("annotations"), part.get("logprobs")
    return {"type": "output_text", "text": text, "annotations": annotations if isinstance(annotations, list) else [],
            "logprobs": logprobs if isinstance(logprobs, list) else []}


def _content_parts(content: Any, role: str, param: str) -> tuple[list[JSON], list[JSON]]:
    """A message item's content -> (normalised Responses parts, chat content parts)."""
    if isinstance(content, str):
        return [_text_part(content, role, {})], [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise wrong_type(param, "a string or an array of content parts")
    kept: list[JSON] = []
    chat: list[JSON] = []
    for j, p in enumerate(content):
        pp = f"{param}[{j}]"
        if not isinstance(p, dict):
            raise wrong_type(pp, "an object")
        ptype = p.get("type")
        if ptype in ("input_text", "output_text", "text", "summary_text"):
            text = _string(p.get("text"), f"{pp}.text")
            kept.append(_text_part(text, role, p))
            chat.append({"type": "text", "text": text})
        elif ptype == "refusal":
            text = _string(p.get("refusal"), f"{pp}.refusal")
            kept.append(p if role == "assistant" else _text_part(text, role, p))
            chat.append({"type": "text", "text": text})
        elif ptype == "input_image":
            if role == "assistant":
                raise bad_request(f"'{pp}.type': an assistant message cannot carry images", f"{pp}.type")
            chat.append(_image_part(p, pp))
            kept.append(p if p.get("detail") else {**p, "detail": "auto"})  # the item schema requires it
        elif ptype == "input_file":
            chat.append(_file_part(p, pp))
            kept.append(p)
        elif ptype is None:
            raise missing_field(f"{pp}.type")
        else:
            raise bad_request(
                f"'{pp}.type': unsupported content type {ptype!r} (supported: input_text, input_image, input_file, "
                "output_text, refusal)", f"{pp}.type", code="invalid_value",
            )
    return kept, chat


def _chat_content(parts: list[JSON]) -> str | list[JSON]:
    """Text-only content as one string (what every upstream takes); parts otherwise."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _item_status(item: JSON, param: str) -> str:
    status = item.get("status")
    if status is None:
        return "completed"
    if status not in _ITEM_STATUSES:
        raise bad_request(f"'{param}.status' must be one of {', '.join(_ITEM_STATUSES)}; got {status!r}",
                          f"{param}.status", code="invalid_value")
    return str(status)


def normalise_items(raw: Any, param: str = "input") -> list[JSON]:
    """``input`` (a string or items) -> items in the Responses shape, each with an id."""
    if isinstance(raw, str):
        return [{"type": "message", "id": new_id("msg"), "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list):
        raise wrong_type(param, "a string or an array of input items")
    out: list[JSON] = []
    for i, item in enumerate(raw):
        p = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise wrong_type(p, "an object")
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            role = item.get("role")
            if role is None:
                raise missing_field(f"{p}.role")
            if role not in _ROLES:
                raise bad_request(f"'{p}.role' must be one of {', '.join(sorted(_ROLES))}; got {role!r}",
                                  f"{p}.role", code="invalid_value")
            if "content" not in item:
                raise missing_field(f"{p}.content")
            kept, _ = _content_parts(item["content"], role, f"{p}.content")
            out.append({"type": "message", "id": item.get("id") or new_id("msg"), "role": role,
                        "status": _item_status(item, p), "content": kept})
        elif kind == "function_call":
            call_id = _string(item.get("call_id"), f"{p}.call_id")
            name = _string(item.get("name"), f"{p}.name")
            args = item.get("arguments", "")
            if not isinstance(args, str):
                raise wrong_type(f"{p}.arguments", "a JSON string")
            out.append({"type": "function_call", "id": item.get("id") or new_id("fc"), "call_id": call_id,
                        "name": name, "arguments": args, "status": _item_status(item, p)})
        elif kind == "function_call_output":
            call_id = _string(item.get("call_id"), f"{p}.call_id")
            output = item.get("output")
            if isinstance(output, list):
                output, _ = _content_parts(output, "user", f"{p}.output")
            elif not isinstance(output, str):
                raise wrong_type(f"{p}.output", "a string or an array of content parts")
            out.append({"type": "function_call_output", "id": item.get("id") or new_id("fco"), "call_id": call_id,
                        "output": output, "status": _item_status(item, p)})
        elif kind == "reasoning":  # kept for the record; its encrypted_content may hold signed thinking
            summary = item.get("summary")
            out.append({**item, "id": item.get("id") or new_id("rs"),
                        "summary": summary if isinstance(summary, list) else []})
        elif kind in ("mcp_call", "mcp_list_tools"):
            for name in ("server_label",) + (("name",) if kind == "mcp_call" else ()):
                _string(item.get(name), f"{p}.{name}")
            out.append({**item, "id": item.get("id") or new_id("mcp")})  # a tool loop's, replayed
        elif kind is None:
            raise missing_field(f"{p}.type")
        else:
            raise bad_request(
                f"'{p}.type': unsupported input item type {kind!r} (supported: message, function_call, "
                "function_call_output, reasoning, mcp_call, mcp_list_tools)", f"{p}.type", code="invalid_value",
            )
    return out


def items_to_messages(items: list[Any]) -> list[JSON]:
    """Normalised items (as :func:`normalise_items` or a Response's output gives them) -> chat messages.

    Consecutive function calls join the assistant message before them (one assistant turn with its
    text and its tool calls, as chat upstreams expect). A reasoning item's signed thinking (its
    ``encrypted_content`` of :func:`fluxway.thinking.encrypted_content`) goes onto the assistant
    turn after it as ``thinking_blocks``; other reasoning is dropped.
    """
    messages: list[JSON] = []
    thinking: list[JSON] = []  # blocks waiting for the assistant turn they belong to
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "reasoning":
            thinking += blocks_from_encrypted(item.get("encrypted_content"))
        elif kind == "message":
            role = str(item.get("role") or "user")
            _, parts = _content_parts(item.get("content") or [], role, "input")
            messages.append({"role": role, "content": _chat_content(parts)})
            if role == "assistant" and thinking:
                messages[-1]["thinking_blocks"], thinking = thinking, []
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}}
            _add_call(messages, call, thinking)
            thinking = []
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                _, parts = _content_parts(output, "user", "output")
                content: Any = _chat_content(parts)
            else:
                content = output if isinstance(output, str) else ""
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
        elif kind == "mcp_call":  # a tool loop's call: the assistant's tool call and its result
            call_id = str(item.get("id") or new_id("mcp"))
            name = function_name(str(item.get("server_label") or ""), str(item.get("name") or ""))
            call = {"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": item.get("arguments") or "{}"}}
            _add_call(messages, call, thinking)
            thinking = []
            messages.append({"role": "tool", "tool_call_id": call_id, "content": _mcp_result(item)})
    return messages


def _add_call(messages: list[JSON], call: JSON, thinking: list[JSON]) -> None:
    """A tool call joins the assistant turn before it, or opens one (always, after signed thinking:
    the blocks lead the turn they were sent with)."""
    last = messages[-1] if messages else None
    if thinking:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call], "thinking_blocks": thinking})
    elif last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        if not last.get("content"):
            last["content"] = None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _mcp_result(item: JSON) -> str:
    output = item.get("output")
    if isinstance(output, str) and item.get("error") is None:
        return output
    error = item.get("error")
    if isinstance(error, dict):
        content = error.get("content")
        if isinstance(content, list):
            text = "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
            return f"Error: {text}"
        return f"Error: {error.get('message') or 'the tool failed'}"
    if item.get("status") == "incomplete":
        return "Error: the tool was not run"
    return output if isinstance(output, str) else ""


# -- tools, formats ------------------------------------------------------------------------------


def _mcp_echo(entry: McpToolEntry) -> JSON:
    raw = entry.raw
    echo: JSON = {"type": "mcp", "server_label": entry.server_label, "allowed_tools": raw.get("allowed_tools"),
                  "require_approval": raw.get("require_approval") or "never", "headers": None}
    if isinstance(raw.get("server_description"), str):  # a string or absent in the schema
        echo["server_description"] = raw["server_description"]
    return echo


def _tools(raw: Any) -> tuple[list[JSON], list[JSON], list[McpToolEntry]]:
    """Responses function and MCP tools -> (as echoed, as chat tools, the MCP entries)."""
    if not isinstance(raw, list):
        raise wrong_type("tools", "an array")
    echo: list[JSON] = []
    chat: list[JSON] = []
    entries: list[McpToolEntry] = []
    for i, tool in enumerate(raw):
        p = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise wrong_type(p, "an object")
        kind = tool.get("type")
        if kind == "mcp":
            entry = parse_mcp_entry(tool, i)
            if any(e.server_label == entry.server_label for e in entries):
                raise bad_request(f"'{p}.server_label': MCP server '{entry.server_label}' is named twice",
                                  f"{p}.server_label", code="invalid_value")
            entries.append(entry)
            echo.append(_mcp_echo(entry))
            continue
        if kind != "function":
            raise bad_request(
                f"'{p}.type': tool type {kind!r} is not supported by Fluxway's Responses API (function and "
                "mcp tools)", f"{p}.type", code="invalid_value",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise missing_field(f"{p}.name")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise wrong_type(f"{p}.parameters", "an object (a JSON schema)")
        fn: JSON = {"name": name, "parameters": params or {"type": "object", "properties": {}}}
        desc = tool.get("description")
        if desc is not None:
            fn["description"] = _string(desc, f"{p}.description")
        strict = tool.get("strict")
        if strict is not None:
            if not isinstance(strict, bool):
                raise wrong_type(f"{p}.strict", "a boolean")
            fn["strict"] = strict
        chat.append({"type": "function", "function": fn})
        echo.append({"type": "function", "name": name, "description": desc, "parameters": params, "strict": strict})
    return echo, chat, entries


def _tool_choice(raw: Any, entries: tuple[McpToolEntry, ...] | None) -> Any:
    """Responses ``tool_choice`` -> the chat one (an MCP server's tool: its function's name)."""
    if raw in ("auto", "none", "required"):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "mcp":
        label = raw.get("server_label")
        if not isinstance(label, str) or not label:
            raise missing_field("tool_choice.server_label")
        if not any(e.server_label == label for e in entries or ()):
            raise bad_request(f"'tool_choice.server_label': no mcp tool of this request has server_label '{label}'",
                              "tool_choice.server_label", code="invalid_value")
        name = raw.get("name")
        if name is None:  # any tool of that server: a tool call is required
            return "required"
        if not isinstance(name, str) or not name:
            raise wrong_type("tool_choice.name", "a non-empty string")
        return {"type": "function", "function": {"name": function_name(label, name)}}
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise missing_field("tool_choice.name")
        return {"type": "function", "function": {"name": name}}
    raise bad_request("'tool_choice' must be auto, none, required, {\"type\": \"function\", \"name\": ...} or "
                      "{\"type\": \"mcp\", \"server_label\": ...}", "tool_choice", code="invalid_value")


def _text_format(text: Any) -> tuple[JSON, JSON | None]:
    """``text`` -> (as echoed, the chat ``response_format`` or None)."""
    if not isinstance(text, dict):
        raise wrong_type("text", "an object")
    fmt = text.get("format")
    echo: JSON = {"format": {"type": "text"},
                  "verbosity": _one_of(text.get("verbosity"), "text.verbosity", _VERBOSITIES) or "medium"}
    if fmt is None:
        return echo, None
    if not isinstance(fmt, dict):
        raise wrong_type("text.format", "an object")
    kind = fmt.get("type")
    if kind == "text":
        return echo, None
    if kind == "json_object":
        echo["format"] = {"type": "json_object"}
        return echo, {"type": "json_object"}
    if kind == "json_schema":
        name = fmt.get("name")
        if not isinstance(name, str) or not name:
            raise missing_field("text.format.name")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            if schema is None:
                raise missing_field("text.format.schema")
            raise wrong_type("text.format.schema", "an object")
        js: JSON = {"name": name, "schema": schema}
        if fmt.get("description") is not None:
            js["description"] = _string(fmt["description"], "text.format.description")
        if fmt.get("strict") is not None:
            if not isinstance(fmt["strict"], bool):
                raise wrong_type("text.format.strict", "a boolean")
            js["strict"] = fmt["strict"]
        echo["format"] = {"type": "json_schema", **js}
        return echo, {"type": "json_schema", "json_schema": js}
    raise bad_request(f"'text.format.type' must be text, json_object or json_schema; got {kind!r}",
                      "text.format.type", code="invalid_value")


def _metadata(raw: Any) -> JSON:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise wrong_type("metadata", "an object of strings")
    if len(raw) > 16:
        raise bad_request("'metadata' may have at most 16 keys", "metadata", code="invalid_value")
    for k, v in raw.items():
        if len(k) > 64 or not isinstance(v, str) or len(v) > 512:
            raise bad_request(f"'metadata.{k[:64]}': keys are at most 64 characters, values strings of at most 512",
                              f"metadata.{k[:64]}", code="invalid_value")
    return raw


# -- the request ---------------------------------------------------------------------------------


def parse_responses_request(body: bytes) -> ResponsesCall:
    if not body:
        raise bad_request("the request body is empty; send a JSON object", code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    for name in data.keys() - _FIELDS:
        raise bad_request(f"Unrecognized request argument supplied: {name}", name, code="unknown_parameter")
    for name, why in _UNSUPPORTED.items():
        if data.get(name):
            raise bad_request(why, name, code="unsupported_parameter")
    model = data.get("model")
    if model is None:
        raise missing_field("model")
    if not isinstance(model, str) or not model:
        raise wrong_type("model", "a non-empty string")
    if "input" not in data or data["input"] is None:
        raise missing_field("input")
    items = normalise_items(data["input"])
    if not items and data.get("previous_response_id") is None:
        raise bad_request("'input' must not be empty", "input", code="invalid_value")
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise wrong_type("instructions", "a string")
    previous = data.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise wrong_type("previous_response_id", "a response id (resp_...)")
    stream = bool(_opt_bool(data, "stream"))
    store = _opt_bool(data, "store")
    parallel = _opt_bool(data, "parallel_tool_calls")
    temperature = _range(data, "temperature", 0.0, 2.0)
    top_p = _range(data, "top_p", 0.0, 1.0)
    max_out = data.get("max_output_tokens")
    if max_out is not None and (not _is_int(max_out) or max_out < 1):
        raise wrong_type("max_output_tokens", "a positive integer")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise wrong_type("user", "a string")
    metadata = _metadata(data.get("metadata"))
    if data.get("stream_options") is not None and not isinstance(data["stream_options"], dict):
        raise wrong_type("stream_options", "an object")
    truncation = _one_of(data.get("truncation"), "truncation", _TRUNCATIONS)
    tier = _one_of(data.get("service_tier"), "service_tier", _SERVICE_TIERS)
    max_tools = data.get("max_tool_calls")
    if max_tools is not None and (not _is_int(max_tools) or max_tools < 1):
        raise wrong_type("max_tool_calls", "a positive integer")

    out: JSON = {"model": model}
    echo: JSON = {
        "instructions": instructions, "max_output_tokens": max_out, "metadata": metadata,
        "parallel_tool_calls": True if parallel is None else parallel, "previous_response_id": previous,
        "store": True if store is None else store, "temperature": 1.0 if temperature is None else temperature,
        "top_p": 1.0 if top_p is None else top_p, "tools": [], "tool_choice": "auto",
        "text": {"format": {"type": "text"}, "verbosity": "medium"}, "reasoning": {"effort": None, "summary": None},
        "truncation": truncation or "disabled", "service_tier": tier or "default",
        "background": False, "max_tool_calls": max_tools, "top_logprobs": 0,
    }
    if user is not None:  # a string or absent in the Response schema, never null
        echo["user"] = user
    mcp: tuple[McpToolEntry, ...] | None = None
    if data.get("tools"):
        echo["tools"], chat_tools, entries = _tools(data["tools"])
        if chat_tools:
            out["tools"] = chat_tools
        if entries:
            mcp = tuple(entries)
        if parallel is not None and chat_tools:
            out["parallel_tool_calls"] = parallel
    elif data.get("tools") is not None and not isinstance(data["tools"], list):
        raise wrong_type("tools", "an array")
    if data.get("tool_choice") is not None:
        choice = _tool_choice(data["tool_choice"], mcp)
        echo["tool_choice"] = data["tool_choice"]
        if "tools" in out or mcp:  # OpenAI refuses a tool_choice without tools (MCP ones come later)
            out["tool_choice"] = choice
    if data.get("text") is not None:
        echo["text"], fmt = _text_format(data["text"])
        if fmt is not None:
            out["response_format"] = fmt
    reasoning = data.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise wrong_type("reasoning", "an object")
        effort = reasoning.get("effort")
        if effort is not None:
            if effort not in _EFFORTS:
                raise bad_request(f"'reasoning.effort' must be one of {', '.join(sorted(_EFFORTS))}; got {effort!r}",
                                  "reasoning.effort", code="invalid_value")
            out["reasoning_effort"] = effort
        summary = _one_of(reasoning.get("summary"), "reasoning.summary", _SUMMARIES)
        echo["reasoning"] = {"effort": effort, "summary": summary}
    if max_out is not None:
        out["max_completion_tokens"] = max_out
    if temperature is not None:
        out["temperature"] = temperature
    if top_p is not None:
        out["top_p"] = top_p
    if user:
        out["user"] = user
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    messages = items_to_messages(items)
    out["messages"] = ([{"role": "system", "content": instructions}] if instructions else []) + messages
    req = CanonicalRequest(Endpoint.CHAT, model, out, stream=stream, include_usage=True, mcp_tools=mcp,
                           max_tool_calls=max_tools)
    return ResponsesCall(req, items, instructions, previous, echo["store"], echo, messages)


def with_history(call: ResponsesCall, history: list[Any]) -> None:
    """Put a previous response's conversation before this turn (instructions stay first)."""
    call.history = history
    system = [{"role": "system", "content": call.instructions}] if call.instructions else []
    call.request.body["messages"] = system + items_to_messages(history) + call.messages


def previous_not_found(response_id: str) -> GatewayError:
    return GatewayError(404, f"Previous response with id '{response_id}' not found.", param="previous_response_id",
                        code="previous_response_not_found")
