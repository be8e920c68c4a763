"""Bedrock requests: an OpenAI chat body -> a Converse request.

OpenAI messages become Converse content blocks (text, image bytes from data: URIs, documents,
toolUse, toolResult); ``system`` messages become the top-level ``system`` blocks; consecutive turns of
one role are merged. A json_object request is answered through a forced tool; reasoning_effort becomes
extended thinking for Claude models. The shapes follow botocore's ``bedrock-runtime`` service model.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fluxway.adapters.toolkit import JSON_TOOL, bad_request, empty_object_schema, image_url_of, max_tokens_of
from fluxway.canonical import JSON
from fluxway.thinking import thinking_blocks

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
            url = image_url_of(part)
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


def _reasoning_blocks(message: JSON) -> list[JSON]:
    """The thinking blocks of an assistant turn as Converse reasoningContent (text + signature, or
    the redacted bytes, base64 in JSON as Anthropic's ``data`` is)."""
    out: list[JSON] = []
    for b in thinking_blocks(message):
        if b["type"] == "redacted_thinking":
            out.append({"reasoningContent": {"redactedContent": b["data"]}})
        elif b["thinking"]:
            text: JSON = {"text": b["thinking"]}
            if b["signature"]:
                text["signature"] = b["signature"]
            out.append({"reasoningContent": {"reasoningText": text}})
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
                blocks = _reasoning_blocks(m) + blocks
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
        "inputSchema": {"json": fn.get("parameters") or empty_object_schema()},
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
        tools = [
            {"toolSpec": {"name": n, "inputSchema": {"json": empty_object_schema()}}} for n in sorted(used) or ["tool"]
        ]
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
    max_tokens = max_tokens_of(body)
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
