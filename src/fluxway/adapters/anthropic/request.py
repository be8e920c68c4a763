"""Anthropic requests: an OpenAI chat body -> a Messages body.

System messages go to the top level, consecutive roles merge, tool messages become ``tool_result``
blocks, images and files become ``image`` / ``document`` blocks, ``reasoning_effort`` becomes a
thinking budget and JSON output a native format or a forced tool.
"""

from __future__ import annotations

from typing import Any

from fluxway.adapters.toolkit import (
    JSON_TOOL,
    allowed_tools,
    bad_request,
    content_parts,
    function_call,
    function_tools,
    image_url_of,
    json_schema_of,
    max_tokens_of,
    named_function,
    parse_data_uri,
    part_text,
    stop_list,
    tool_calls_list,
)
from fluxway.canonical import JSON
from fluxway.thinking import thinking_blocks

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


def _image_block(part: JSON, where: str) -> JSON:
    url = image_url_of(part)
    if not isinstance(url, str) or not url:
        raise bad_request(f"{where}.image_url.url: expected a URL string")
    parsed = parse_data_uri(url)
    if parsed:
        media, data = parsed
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request(f"{where}.image_url.url: only base64 data: URIs and http(s) URLs are supported")


def _file_block(part: JSON, where: str) -> JSON:
    f = part.get("file")
    data = f.get("file_data") if isinstance(f, dict) else None
    parsed = parse_data_uri(data) if isinstance(data, str) else None
    if not parsed:
        raise bad_request(f"{where}.file: anthropic takes files as base64 data: URIs in file_data (no file_id)")
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
    blocks: list[JSON] = []
    for pwhere, part, kind in content_parts(content, where):
        if kind in ("text", "refusal"):
            block: JSON = {"type": "text", "text": part_text(part, kind, pwhere)}
        elif kind == "image_url" and allow_media:
            block = _image_block(part, pwhere)
        elif kind == "file" and allow_media:
            block = _file_block(part, pwhere)
        else:
            raise bad_request(f"{pwhere}.type: content part '{kind}' is not supported by anthropic here")
        if part.get("cache_control"):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use_blocks(tool_calls: Any, where: str) -> list[JSON]:
    out: list[JSON] = []
    for j, call in enumerate(tool_calls_list(tool_calls, where)):
        name, parsed = function_call(call, f"{where}.tool_calls[{j}]")
        if not isinstance(parsed, dict):
            raise bad_request(f"{where}.tool_calls[{j}].function.arguments: must encode a JSON object")
        out.append({"type": "tool_use", "id": str(call.get("id") or f"toolu_{j}"), "name": name, "input": parsed})
    return out


def _assistant_blocks(m: JSON, where: str) -> list[JSON]:
    blocks: list[JSON] = []
    # Thinking blocks (with their signatures) returned earlier must lead the assistant turn.
    blocks.extend(thinking_blocks(m))
    blocks.extend(_content_blocks(m.get("content"), where, allow_media=False))
    if m.get("tool_calls"):
        blocks.extend(_tool_use_blocks(m["tool_calls"], where))
    return blocks


def _tool_result_block(m: JSON, where: str) -> JSON:
    call_id = m.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{where}.tool_call_id: a tool message needs the id of the call it answers")
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
        raise bad_request("messages: expected a non-empty list")
    system: list[JSON] = []
    out: list[JSON] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request(f"{where}: expected an object")
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
            raise bad_request(f"{where}.role: role '{role}' is not supported by anthropic")
    if out and out[-1]["role"] == "assistant":
        # A final assistant turn (a prefill) may not end with whitespace.
        last = out[-1]["content"]
        if last and last[-1].get("type") == "text":
            last[-1]["text"] = last[-1]["text"].rstrip()
    if not out:
        raise bad_request("messages: nothing to send besides system messages")
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
    out: list[JSON] = []
    for t, fn in function_tools(tools, "anthropic"):
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
        name = named_function(choice)
        if name is not None:
            return {"type": "tool", "name": name}, tools
        spec = allowed_tools(choice)
        if spec is not None:
            names = set(spec[0])
            allowed = [t for t in tools if t["name"] in names]
            return {"type": "any" if spec[1] else "auto"}, allowed
    raise bad_request("tool_choice: expected auto, required, none or a function")


def _thinking(body: JSON) -> JSON | None:
    native = body.get("thinking")
    if isinstance(native, dict):
        return dict(native)
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return None
    budget = THINKING_BUDGET.get(str(effort))
    if budget is None:
        raise bad_request(f"reasoning_effort: unknown value {effort!r}")
    return {"type": "enabled", "budget_tokens": budget}


def build_body(body: JSON, model: str, stream: bool) -> JSON:
    """The Anthropic Messages body for one OpenAI chat body (which is left untouched)."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise bad_request("n: anthropic returns one choice per request")
    system, messages = convert_messages(body.get("messages"))
    out: JSON = {"model": model, "messages": messages}

    explicit_max = max_tokens_of(body)
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
        out["output_config"] = {"format": {"type": "json_schema", "schema": json_schema_of(rf)}}
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

    stop = stop_list(body.get("stop"))
    if stop is not None:
        out["stop_sequences"] = stop
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


