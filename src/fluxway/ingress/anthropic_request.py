"""Anthropic Messages request -> canonical (OpenAI Chat Completions) body.

Validation follows the Anthropic API: every problem is a 400 whose message starts with the path of
the offending field (``messages.0.content.1.source: Field required``) and whose ``param`` names it.
Unknown top-level fields are ignored (newer SDKs keep adding some); unknown content blocks and
server tools are rejected, since no OpenAI-shaped upstream could honour them.
"""

from __future__ import annotations

from typing import Any

import orjson

from fluxway.canonical import JSON, CanonicalRequest, Endpoint
from fluxway.errors import GatewayError
from fluxway.thinking import THINKING_TYPES, thinking_block

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
ROLES = frozenset({"user", "assistant", "system"})
TOOL_ERROR_PREFIX = "Error: "
_EMPTY = "all messages must have non-empty content except for the optional final assistant message"


def invalid(param: str, message: str, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, f"{param}: {message}", param=param, code=code)


def missing(param: str) -> GatewayError:
    return invalid(param, "Field required", "missing_required_parameter")


def wrong_type(param: str, expected: str) -> GatewayError:
    return invalid(param, f"Input should be {expected}", "invalid_type")


def effort_for_budget(budget: int) -> str:
    """``thinking.budget_tokens`` -> an OpenAI ``reasoning_effort``."""
    if budget < 2048:
        return "low"
    if budget < 8192:
        return "medium"
    return "high"


def parse_messages_request(body: bytes) -> CanonicalRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise GatewayError(400, "the request body must be a JSON object", code="invalid_json")
    return RequestParser(data).parse()


class RequestParser:
    """One request's translation; holds the few facts later steps need."""

    __slots__ = ("data", "keep_thinking")

    def __init__(self, data: JSON) -> None:
        self.data = data
        thinking = data.get("thinking")
        self.keep_thinking = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")

    def parse(self) -> CanonicalRequest:
        data = self.data
        model = data.get("model")
        if model is None:
            raise missing("model")
        if not isinstance(model, str) or not model:
            raise wrong_type("model", "a non-empty string")
        max_tokens = data.get("max_tokens")
        if max_tokens is None:
            raise missing("max_tokens")
        if not _is_int(max_tokens):
            raise wrong_type("max_tokens", "a valid integer")
        if max_tokens < 1:
            raise invalid("max_tokens", "Input should be greater than or equal to 1")
        stream = data.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise wrong_type("stream", "a valid boolean")

        out: JSON = {"model": model, "messages": self.messages(), "max_tokens": max_tokens}
        if stream:
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
        self.sampling(out)
        self.tools(out)
        self.thinking(out, max_tokens)
        self.output_config(out)
        metadata = data.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise wrong_type("metadata", "a valid dictionary")
            user = metadata.get("user_id")
            if user is not None:
                if not isinstance(user, str):
                    raise wrong_type("metadata.user_id", "a valid string")
                out["user"] = user
        return CanonicalRequest(Endpoint.CHAT, model, out, stream=stream, include_usage=True)

    # -- messages -------------------------------------------------------------------------------

    def messages(self) -> list[JSON]:
        data = self.data
        messages = data.get("messages")
        if messages is None:
            raise missing("messages")
        if not isinstance(messages, list):
            raise wrong_type("messages", "a valid list")
        if not messages:
            raise invalid("messages", "at least one message is required")
        out: list[JSON] = []
        system = data.get("system")
        if system is not None:
            text = system_text(system, "system")
            if text:
                out.append({"role": "system", "content": text})
        last = len(messages) - 1
        for i, msg in enumerate(messages):
            p = f"messages.{i}"
            if not isinstance(msg, dict):
                raise wrong_type(p, "a valid dictionary")
            role = msg.get("role")
            if role is None:
                raise missing(f"{p}.role")
            if not isinstance(role, str) or role not in ROLES:
                raise invalid(f"{p}.role", "Input should be 'user', 'assistant' or 'system'")
            content = msg.get("content")
            if content is None:
                raise missing(f"{p}.content")
            if not isinstance(content, str | list):
                raise wrong_type(f"{p}.content", "a valid string or a list of content blocks")
            if not content or (isinstance(content, str) and not content.strip()):
                if role == "assistant" and i == last:
                    continue  # an empty prefill adds nothing
                raise invalid(p, _EMPTY)
            if role == "user":
                out.extend(self.user(content, p))
            elif role == "assistant":
                out.append(self.assistant(content, p))
            else:
                out.append({"role": "system", "content": system_text(content, f"{p}.content")})
        return out

    def user(self, content: str | list[Any], p: str) -> list[JSON]:
        if isinstance(content, str):
            return [{"role": "user", "content": content}]
        tool_messages: list[JSON] = []
        parts: list[JSON] = []
        tool_images: list[JSON] = []
        for j, block in enumerate(content):
            bp = f"{p}.content.{j}"
            kind = block_type(block, bp)
            if kind == "tool_result":
                tool_messages.append(tool_result(block, bp, tool_images))
            elif kind in THINKING_TYPES or kind == "tool_use":
                raise invalid(f"{bp}.type", f"'{kind}' blocks are only allowed in assistant messages")
            else:
                parts.append(content_part(block, kind, bp))
        parts = tool_images + parts
        out = tool_messages
        if parts:
            if len(parts) == 1 and parts[0]["type"] == "text":
                out.append({"role": "user", "content": parts[0]["text"]})
            else:
                out.append({"role": "user", "content": parts})
        return out

    def assistant(self, content: str | list[Any], p: str) -> JSON:
        if isinstance(content, str):
            return {"role": "assistant", "content": content}
        texts: list[str] = []
        calls: list[JSON] = []
        thinking: list[JSON] = []
        for j, block in enumerate(content):
            bp = f"{p}.content.{j}"
            kind = block_type(block, bp)
            if kind == "text":
                texts.append(text_of(block, bp))
            elif kind == "tool_use":
                calls.append(tool_call(block, bp))
            elif kind in THINKING_TYPES:
                whole = thinking_block(block)
                if self.keep_thinking and whole is not None:
                    thinking.append(whole)
            elif kind == "tool_result":
                raise invalid(f"{bp}.type", "'tool_result' blocks are only allowed in user messages")
            else:
                raise invalid(f"{bp}.type", f"'{kind}' blocks are not allowed in assistant messages")
        msg: JSON = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
        if calls:
            msg["tool_calls"] = calls
        elif msg["content"] is None:
            msg["content"] = ""
        if thinking:
            # litellm's convention, so that an Anthropic upstream can replay signed thinking.
            msg["thinking_blocks"] = thinking
        return msg

    # -- parameters -----------------------------------------------------------------------------

    def sampling(self, out: JSON) -> None:
        data = self.data
        for name in ("temperature", "top_p"):  # both in [0, 1] in Anthropic's API
            value = data.get(name)
            if value is not None:
                if not _is_number(value):
                    raise wrong_type(name, "a valid number")
                if not 0 <= value <= 1:
                    raise invalid(name, "Input should be between 0 and 1")
                out[name] = value
        top_k = data.get("top_k")
        if top_k is not None:
            if not _is_int(top_k):
                raise wrong_type("top_k", "a valid integer")
            if top_k < 0:
                raise invalid("top_k", "Input should be greater than or equal to 0")
            out["top_k"] = top_k
        stops = data.get("stop_sequences")
        if stops is not None:
            if not isinstance(stops, list):
                raise wrong_type("stop_sequences", "a valid list")
            for k, s in enumerate(stops):
                if not isinstance(s, str):
                    raise wrong_type(f"stop_sequences.{k}", "a valid string")
            if stops:
                out["stop"] = stops

    def tools(self, out: JSON) -> None:
        data = self.data
        tools = data.get("tools")
        converted: list[JSON] = []
        if tools is not None:
            if not isinstance(tools, list):
                raise wrong_type("tools", "a valid list")
            converted = [function_tool(t, f"tools.{k}") for k, t in enumerate(tools)]
            if converted:
                out["tools"] = converted
        choice = data.get("tool_choice")
        if choice is None:
            return
        if not isinstance(choice, dict):
            raise wrong_type("tool_choice", "a valid dictionary")
        kind = choice.get("type")
        mapped: str | JSON
        if kind == "auto":
            mapped = "auto"
        elif kind == "any":
            mapped = "required"
        elif kind == "none":
            mapped = "none"
        elif kind == "tool":
            name = choice.get("name")
            if name is None:
                raise missing("tool_choice.name")
            if not isinstance(name, str):
                raise wrong_type("tool_choice.name", "a valid string")
            mapped = {"type": "function", "function": {"name": name}}
        elif kind is None:
            raise missing("tool_choice.type")
        else:
            raise invalid("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
        disable = choice.get("disable_parallel_tool_use")
        if disable is not None and not isinstance(disable, bool):
            raise wrong_type("tool_choice.disable_parallel_tool_use", "a valid boolean")
        if converted:  # OpenAI refuses tool_choice and parallel_tool_calls without tools
            out["tool_choice"] = mapped
            if disable:
                out["parallel_tool_calls"] = False

    def thinking(self, out: JSON, max_tokens: int) -> None:
        thinking = self.data.get("thinking")
        if thinking is None:
            return
        if not isinstance(thinking, dict):
            raise wrong_type("thinking", "a valid dictionary")
        kind = thinking.get("type")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if budget is None:
                raise missing("thinking.enabled.budget_tokens")
            if not _is_int(budget):
                raise wrong_type("thinking.enabled.budget_tokens", "a valid integer")
            if budget < 1024:
                raise invalid("thinking.enabled.budget_tokens", "Input should be greater than or equal to 1024")
            if budget >= max_tokens:
                raise invalid("max_tokens", "`max_tokens` must be greater than `thinking.budget_tokens`")
            out["reasoning_effort"] = effort_for_budget(budget)
            out["thinking"] = thinking
        elif kind == "adaptive":
            out["thinking"] = thinking
        elif kind is None:
            raise missing("thinking.type")
        elif kind != "disabled":
            raise invalid("thinking.type", "Input should be 'enabled', 'disabled' or 'adaptive'")

    def output_config(self, out: JSON) -> None:
        cfg = self.data.get("output_config")
        if cfg is None:
            return
        if not isinstance(cfg, dict):
            raise wrong_type("output_config", "a valid dictionary")
        effort = cfg.get("effort")
        if effort is not None:
            if effort not in ("low", "medium", "high", "xhigh", "max"):
                raise invalid("output_config.effort", "Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
            out["reasoning_effort"] = effort
        fmt = cfg.get("format")
        if fmt is None:
            return
        if not isinstance(fmt, dict):
            raise wrong_type("output_config.format", "a valid dictionary")
        if fmt.get("type") != "json_schema":
            raise invalid("output_config.format.type", "Input should be 'json_schema'")
        schema = fmt.get("schema")
        if schema is None:
            raise missing("output_config.format.schema")
        if not isinstance(schema, dict):
            raise wrong_type("output_config.format.schema", "a valid dictionary")
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


# -- blocks -------------------------------------------------------------------------------------


def block_type(block: Any, bp: str) -> str:
    if not isinstance(block, dict):
        raise wrong_type(bp, "a valid dictionary")
    kind = block.get("type")
    if kind is None:
        raise missing(f"{bp}.type")
    if not isinstance(kind, str):
        raise wrong_type(f"{bp}.type", "a valid string")
    return kind


def text_of(block: JSON, bp: str) -> str:
    text = block.get("text")
    if text is None:
        raise missing(f"{bp}.text")
    if not isinstance(text, str):
        raise wrong_type(f"{bp}.text", "a valid string")
    return text


def system_text(system: Any, p: str) -> str:
    """``system`` as one string (text blocks joined by blank lines)."""
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise wrong_type(p, "a valid string or a list of text blocks")
    texts: list[str] = []
    for j, block in enumerate(system):
        bp = f"{p}.{j}"
        if block_type(block, bp) != "text":
            raise invalid(f"{bp}.type", "Input should be 'text'")
        texts.append(text_of(block, bp))
    return "\n\n".join(texts)


def content_part(block: JSON, kind: str, bp: str) -> JSON:
    """A user content block (text, image, document) -> an OpenAI content part."""
    if kind == "text":
        return {"type": "text", "text": text_of(block, bp)}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": image_url(block, bp)}}
    if kind == "document":
        return document_part(block, bp)
    raise invalid(f"{bp}.type", f"content blocks of type '{kind}' are not supported by this gateway")


def _source(block: JSON, bp: str) -> tuple[JSON, str]:
    source = block.get("source")
    if source is None:
        raise missing(f"{bp}.source")
    if not isinstance(source, dict):
        raise wrong_type(f"{bp}.source", "a valid dictionary")
    kind = source.get("type")
    if kind is None:
        raise missing(f"{bp}.source.type")
    if not isinstance(kind, str):
        raise wrong_type(f"{bp}.source.type", "a valid string")
    return source, kind


def _source_str(source: JSON, name: str, sp: str) -> str:
    value = source.get(name)
    if value is None:
        raise missing(f"{sp}.{name}")
    if not isinstance(value, str):
        raise wrong_type(f"{sp}.{name}", "a valid string")
    return value


def image_url(block: JSON, bp: str) -> str:
    source, kind = _source(block, bp)
    sp = f"{bp}.source"
    if kind == "base64":
        media = _source_str(source, "media_type", sp)
        if media not in IMAGE_TYPES:
            raise invalid(f"{sp}.media_type", "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
        return f"data:{media};base64,{_source_str(source, 'data', sp)}"
    if kind == "url":
        return _source_str(source, "url", sp)
    raise invalid(f"{sp}.type", f"image sources of type '{kind}' are not supported by this gateway")


def document_part(block: JSON, bp: str) -> JSON:
    source, kind = _source(block, bp)
    sp = f"{bp}.source"
    title = block.get("title")
    if kind == "base64":
        media = _source_str(source, "media_type", sp)
        if media != "application/pdf":
            raise invalid(f"{sp}.media_type", "Input should be 'application/pdf'")
        data = _source_str(source, "data", sp)
        filename = title if isinstance(title, str) and title else "document.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": f"data:application/pdf;base64,{data}"}}
    if kind == "text":
        text = _source_str(source, "data", sp)
        return {"type": "text", "text": f"{title}\n\n{text}" if isinstance(title, str) and title else text}
    raise invalid(f"{sp}.type", f"document sources of type '{kind}' are not supported by this gateway")


def tool_call(block: JSON, bp: str) -> JSON:
    call_id = block.get("id")
    if call_id is None:
        raise missing(f"{bp}.id")
    if not isinstance(call_id, str):
        raise wrong_type(f"{bp}.id", "a valid string")
    name = block.get("name")
    if name is None:
        raise missing(f"{bp}.name")
    if not isinstance(name, str):
        raise wrong_type(f"{bp}.name", "a valid string")
    args = block.get("input", {})
    if not isinstance(args, dict):
        raise wrong_type(f"{bp}.input", "a valid dictionary")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": orjson.dumps(args).decode()}}


def tool_result(block: JSON, bp: str, images: list[JSON]) -> JSON:
    """A ``tool_result`` block -> an OpenAI ``tool`` message; its images go to ``images``."""
    call_id = block.get("tool_use_id")
    if call_id is None:
        raise missing(f"{bp}.tool_use_id")
    if not isinstance(call_id, str):
        raise wrong_type(f"{bp}.tool_use_id", "a valid string")
    content = block.get("content")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise wrong_type(f"{bp}.is_error", "a valid boolean")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts: list[str] = []
        for k, inner in enumerate(content):
            ip = f"{bp}.content.{k}"
            kind = block_type(inner, ip)
            if kind not in ("text", "image", "document"):
                raise invalid(f"{ip}.type", f"'{kind}' blocks are not allowed in tool results")
            part = content_part(inner, kind, ip)
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
        text = "\n".join(texts)
    else:
        raise wrong_type(f"{bp}.content", "a valid string or a list of content blocks")
    if is_error:
        text = TOOL_ERROR_PREFIX + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def function_tool(tool: Any, tp: str) -> JSON:
    if not isinstance(tool, dict):
        raise wrong_type(tp, "a valid dictionary")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise invalid(f"{tp}.type", f"tools of type '{kind}' are not supported by this gateway")
    name = tool.get("name")
    if name is None:
        raise missing(f"{tp}.name")
    if not isinstance(name, str) or not name:
        raise wrong_type(f"{tp}.name", "a non-empty string")
    schema = tool.get("input_schema")
    if schema is None:
        raise missing(f"{tp}.input_schema")
    if not isinstance(schema, dict):
        raise wrong_type(f"{tp}.input_schema", "a valid dictionary")
    fn: JSON = {"name": name}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise wrong_type(f"{tp}.description", "a valid string")
        fn["description"] = description
    fn["parameters"] = schema
    strict = tool.get("strict")
    if isinstance(strict, bool):
        fn["strict"] = strict
    return {"type": "function", "function": fn}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
