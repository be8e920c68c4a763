"""Gemini requests: an OpenAI chat body -> a generateContent body.

Messages become ``contents``/``parts`` with a ``systemInstruction``; tools become
``functionDeclarations``; sampling, JSON output and reasoning go into ``generationConfig``. Tool results
are mapped back to their function by the id of the earlier call.
"""

from __future__ import annotations

from typing import Any

import orjson

from fluxway.adapters.gemini.wire import signature_of
from fluxway.adapters.toolkit import (
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


def _media_part(url: str, where: str) -> JSON:
    parsed = parse_data_uri(url)
    if parsed:
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    if url.startswith(("https://", "http://", "gs://")):
        ext = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
        return {"fileData": {"mimeType": _MIME_BY_EXT.get(ext, "image/jpeg"), "fileUri": url}}
    raise bad_request(f"{where}: only base64 data: URIs and http(s) URLs are supported")


def _parts(content: Any, where: str) -> list[JSON]:
    """OpenAI message content -> Gemini parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[JSON] = []
    for pwhere, part, kind in content_parts(content, where):
        if kind in ("text", "refusal"):
            parts.append({"text": part_text(part, kind, pwhere)})
        elif kind == "image_url":
            url = image_url_of(part)
            if not isinstance(url, str):
                raise bad_request(f"{pwhere}.image_url.url: expected a URL string")
            parts.append(_media_part(url, f"{pwhere}.image_url.url"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
                raise bad_request(f"{pwhere}.input_audio: expected {{data, format}}")
            mime = "audio/" + str(audio.get("format") or "wav")
            parts.append({"inlineData": {"mimeType": mime, "data": audio["data"]}})
        elif kind == "file":
            f: JSON = part["file"] if isinstance(part.get("file"), dict) else {}
            ref = f.get("file_data") or f.get("file_id")
            if not isinstance(ref, str):
                raise bad_request(f"{pwhere}.file: expected file_data (a data: URI) or file_id (a file URI)")
            parts.append(_media_part(ref, f"{pwhere}.file"))
        else:
            raise bad_request(f"{pwhere}.type: content part '{kind}' is not supported by gemini")
    return parts


def _text(content: Any, where: str) -> str:
    return "".join(p.get("text", "") for p in _parts(content, where))


def _call_parts(tool_calls: Any, where: str, model: str) -> list[JSON]:
    parts: list[JSON] = []
    for j, call in enumerate(tool_calls_list(tool_calls, where)):
        name, parsed = function_call(call, f"{where}.tool_calls[{j}]")
        part: JSON = {"functionCall": {"name": name, "args": parsed if isinstance(parsed, dict) else {}}}
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
        raise bad_request(f"{where}.tool_call_id: no earlier assistant tool call has id {call_id!r}")
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
        raise bad_request("messages: expected a non-empty list")
    system: list[JSON] = []
    out: list[JSON] = []
    names: dict[str, str] = {}
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request(f"{where}: expected an object")
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
            raise bad_request(f"{where}.role: role '{role}' is not supported by gemini")
    if not out:
        raise bad_request("messages: nothing to send besides system messages")
    return system, out


def convert_tools(tools: Any) -> list[JSON]:
    decls: list[JSON] = []
    for _, fn in function_tools(tools, "gemini"):
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
        name = named_function(choice)
        if name is not None:
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
        spec = allowed_tools(choice)
        if spec is not None:
            mode = "ANY" if spec[1] else "AUTO"
            return {"functionCallingConfig": {"mode": mode, "allowedFunctionNames": spec[0]}}
    raise bad_request("tool_choice: expected auto, required, none or a function")


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
    max_tokens = max_tokens_of(body)
    if max_tokens:
        gc["maxOutputTokens"] = max_tokens
    stop = stop_list(body.get("stop"))
    if stop is not None:
        gc["stopSequences"] = stop
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        gc["candidateCount"] = n
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        gc["responseMimeType"] = "application/json"
        if rf["type"] == "json_schema":
            gc["responseJsonSchema"] = json_schema_of(rf)
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGET:
            raise bad_request(f"reasoning_effort: unknown value {effort!r}")
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
