"""The Responses API's ``Response`` object and its output items, built from canonical answers.

Field for field what OpenAI's published ``Response`` schema requires (openai/openai-openapi), with
the request's settings echoed as the SDKs expect them.
"""

from __future__ import annotations

import time
from typing import Any

from fluxway.canonical import JSON, CanonicalResponse, Usage
from fluxway.ingress.responses_request import ResponsesCall, new_id
from fluxway.thinking import encrypted_content, thinking_blocks


def text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, content: list[JSON], status: str) -> JSON:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JSON:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def reasoning_item(item_id: str, text: str, status: str, blocks: list[JSON] | None = None) -> JSON:
    """The model's reasoning as text (Anthropic thinking, Gemini thoughts, ``reasoning_content``);
    signed thinking ``blocks`` travel in ``encrypted_content`` for the caller to send back."""
    content = [{"type": "reasoning_text", "text": text}] if text else []
    item: JSON = {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}
    if blocks:
        item["encrypted_content"] = encrypted_content(blocks)
    return item


def reasoning_text(obj: Any) -> str:
    """The reasoning a chat message or delta carries (``reasoning_content`` / ``reasoning``)."""
    if isinstance(obj, dict):
        for name in ("reasoning_content", "reasoning"):
            value = obj.get(name)
            if isinstance(value, str) and value:
                return value
    return ""


def usage_object(usage: Usage | None) -> JSON | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def finish_status(finish: Any) -> tuple[str, JSON | None]:
    """A chat ``finish_reason`` -> the Response's ``(status, incomplete_details)``."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def build_response(
    call: ResponsesCall,
    response_id: str,
    created_at: int,
    output: list[JSON],
    status: str,
    *,
    usage: JSON | None = None,
    error: JSON | None = None,
    incomplete_details: JSON | None = None,
) -> JSON:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,  # "only present when completed"
        "error": error,
        "incomplete_details": incomplete_details,
        "model": call.request.model,
        "output": output,
        **({} if usage is None else {"usage": usage}),  # an object or absent in the schema, never null
        **call.echo,
    }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def output_items(resp: CanonicalResponse) -> tuple[list[JSON], Any]:
    """A chat completion -> (Response output items, its finish_reason)."""
    choices = resp.body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    msg = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    assert isinstance(msg, dict)
    out: list[JSON] = []
    thought = reasoning_text(msg)
    blocks = thinking_blocks(msg)
    if thought or blocks:
        out.append(reasoning_item(new_id("rs"), thought, "completed", blocks))
    text = _text(msg.get("content"))
    refusal = msg.get("refusal")
    if text:
        out.append(message_item(new_id("msg"), [text_part(text)], "completed"))
    elif isinstance(refusal, str) and refusal:
        out.append(message_item(new_id("msg"), [{"type": "refusal", "refusal": refusal}], "completed"))
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        for c in calls:
            if not isinstance(c, dict):
                continue
            fn = c.get("function") if isinstance(c.get("function"), dict) else {}
            assert isinstance(fn, dict)
            args = fn.get("arguments")
            out.append(function_call_item(
                new_id("fc"), str(c.get("id") or new_id("call")), str(fn.get("name") or ""),
                args if isinstance(args, str) else "{}", "completed",
            ))
    return out, choice.get("finish_reason")


def mcp_list_tools_item(item_id: str, server_label: str, tools: list[Any]) -> JSON:
    """An ``mcp_list_tools`` item: the tools of one MCP server the model was offered."""
    return {"id": item_id, "type": "mcp_list_tools", "server_label": server_label, "error": None, "tools": [
        {"name": t.local_name, "description": t.description, "input_schema": dict(t.input_schema),
         "annotations": dict(t.annotations) if t.annotations else None}
        for t in tools
    ]}


def mcp_call_item(call: Any, status: str | None = None) -> JSON:
    """An ``mcp_call`` item (a :class:`fluxway.mcp.loop.ToolCall`): its output, or its error as an
    ``mcp_tool_execution_error`` holding the message the model was shown."""
    done = status is None
    state = call.status if done else status
    error = None
    if done and call.is_error:
        error = {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": call.error or ""}]}
    return {"id": call.id, "type": "mcp_call", "status": state, "server_label": call.server_label,
            "name": call.name, "arguments": call.arguments, "output": call.output if done else None,
            "error": error, "approval_request_id": None}


def tool_loop_items(listings: list[Any], calls: list[Any]) -> list[JSON]:
    """A tool loop's output items, before the final answer's: the listings, then every call."""
    out = [mcp_list_tools_item(x.id, x.server_label, x.tools) for x in listings]
    for c in calls:
        if c.preface:  # what the model wrote beside the calls of a round, before them
            out.append(message_item(new_id("msg"), [text_part(c.preface)], "completed"))
        out.append(mcp_call_item(c))
    return out
