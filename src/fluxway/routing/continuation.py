"""Continuing a partial assistant answer on another target (mid-stream failover).

A target continues a partial answer in one of these ways (its provider's ``continuation``, declared
on the adapter's preset or settings, or in the config; see
:meth:`fluxway.adapters.settings.ProviderSettings.continuation_for`):

``prefill``                 a trailing assistant message, continued natively (Anthropic, Claude on Bedrock)
``prefix``                  a trailing assistant message with ``"prefix": true`` (Mistral, DeepSeek beta)
``continue_final_message``  a trailing assistant message with ``continue_final_message: true`` and
                            ``add_generation_prompt: false`` (vLLM)
``completion``              the server's own chat template applied to the conversation
                            (``POST /apply-template``, llama.cpp's server), the partial answer appended
                            and the prompt continued on the raw ``/completions`` route
``none``                    no continuation: such a target is never used to continue a stream

A continuation gets only what is left of the caller's output budget (``max_tokens`` /
``max_completion_tokens`` minus the tokens already streamed, as :mod:`fluxway.tokens` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fluxway.adapters.base import StreamDecoder, dumps, loads_object
from fluxway.canonical import (
    JSON,
    CanonicalRequest,
    Endpoint,
    ErrorKind,
    HttpCall,
    StreamChunk,
    UpstreamError,
    Usage,
)
from fluxway.tokens import completion_tokens, estimate_prompt_tokens

if TYPE_CHECKING:
    from fluxway.canonical import Target
    from fluxway.routing.executor import Executor, Route, Trace
    from fluxway.routing.health import Permit
    from fluxway.routing.stream import Leg

_MAX_KEYS = ("max_tokens", "max_completion_tokens")
# Sampling fields a raw completion request takes from the chat request.
_COMPLETION_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "user",
    "logit_bias",
)


def streamed_tokens(text: str, model: str) -> int:
    """Output tokens in the text already streamed (Fluxway's own count, :mod:`fluxway.tokens`)."""
    return completion_tokens((text,), model)


def remaining_budget(body: JSON, streamed: int) -> int | None:
    """What is left of the caller's output budget after ``streamed`` tokens; None: no budget set."""
    limits = [int(body[k]) for k in _MAX_KEYS if isinstance(body.get(k), int | float) and body.get(k)]
    if not limits:
        return None
    return min(limits) - streamed


def leg_usage(body: JSON, text: str, model: str) -> Usage:
    """Fluxway's count of a leg that reported no usage: its prompt and the text it streamed."""
    prompt = estimate_prompt_tokens(body, model)
    return Usage(prompt_tokens=prompt, completion_tokens=streamed_tokens(text, model), estimated=True)


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
        reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
        estimated=a.estimated or b.estimated,
    )


def continuation_body(body: JSON, partial: str, kind: str, remaining: int | None) -> JSON:
    """The chat body that asks a target of continuation ``kind`` to continue ``partial``."""
    out = dict(body)
    if partial:
        message: JSON = {"role": "assistant", "content": partial}
        if kind == "prefix":
            message["prefix"] = True
        out["messages"] = [*body.get("messages", ()), message]
        if kind == "continue_final_message":
            out["continue_final_message"] = True
            out["add_generation_prompt"] = False
    if remaining is not None:
        for k in _MAX_KEYS:
            if k in out:
                out[k] = remaining
    return out


def trim_echo(text: str, partial: str) -> str:
    """A prefill ending in whitespace is sent stripped (Anthropic refuses trailing whitespace): drop
    the whitespace the continuation repeats at its start, which the client already has."""
    tail = partial[len(partial.rstrip()) :]
    n = 0
    while n < len(tail) and n < len(text) and text[n] == tail[n]:
        n += 1
    return text[n:]


@dataclass(slots=True)
class Continuer:
    """The attempt function that opens a continuation leg on one target (for ``Executor.run``)."""

    executor: Executor
    partial: str
    remaining: int | None

    async def __call__(self, req: CanonicalRequest, route: Route, target: Target, permit: Permit, trace: Trace) -> Leg:
        kind = self.executor.continuation(target) if self.partial else "prefill"
        if kind == "completion":
            return await self._raw_completion(req, route, target, permit, trace)
        body = continuation_body(req.body, self.partial, kind, self.remaining)
        leg_req = CanonicalRequest(req.endpoint, req.model, body, True, req.include_usage)
        base = _continuation_base_url(self.executor, target) if kind == "prefix" else None
        if base is None:
            return await self.executor.open_leg(leg_req, route, target, permit, trace)
        adapter: Any = self.executor.adapters[target.provider]
        call = adapter.build(leg_req, target, await self.executor.authorize(target, permit))
        call.url = base + call.url[len(adapter.base_url) :]
        decoder = adapter.stream_decoder(leg_req, target)
        return await self.executor.open_call(call, decoder, leg_req.body, route, target, permit, trace)

    async def _raw_completion(
        self, req: CanonicalRequest, route: Route, target: Target, permit: Permit, trace: Trace
    ) -> Leg:
        """llama.cpp's way: its chat template renders the conversation (with the generation prompt),
        the partial answer is appended, and ``/completions`` continues that prompt."""
        ex = self.executor
        adapter: Any = ex.adapters[target.provider]
        base: str = getattr(adapter, "base_url", "")
        if not base:
            raise UpstreamError(ErrorKind.BAD_REQUEST, f"{target.key}: no raw completion route to continue on")
        root = base[:-3] if base.endswith("/v1") else base
        creds = await ex.authorize(target, permit)
        headers = {"content-type": "application/json", **adapter.static_headers, **adapter.auth_headers(creds)}
        template_call = HttpCall(
            "POST", root + "/apply-template", headers, dumps({"messages": req.body.get("messages", [])})
        )
        provider = ex.cfg.provider(target.provider)
        limit = provider.max_response_bytes if provider is not None else 64 * 1024 * 1024
        reply = await ex.transport.send(template_call, ex.timeouts(target, route), limit)
        trace.upstream_s += reply.elapsed
        if reply.status >= 400:
            raise adapter.classify_error(reply.status, reply.headers, reply.body)
        prompt = loads_object(reply.body, "apply-template answer").get("prompt")
        if not isinstance(prompt, str):
            raise UpstreamError(ErrorKind.PROTOCOL, f"{target.key}: /apply-template answered no 'prompt'")
        body: JSON = {"prompt": prompt + self.partial, "stream": True}
        body.update({k: req.body[k] for k in _COMPLETION_FIELDS if k in req.body})
        if self.remaining is not None:
            body["max_tokens"] = self.remaining
        leg_req = CanonicalRequest(Endpoint.COMPLETIONS, req.model, body, True, req.include_usage)
        call = adapter.build(leg_req, target, creds)
        decoder = ChatFromCompletion(adapter.stream_decoder(leg_req, target))
        return await ex.open_call(call, decoder, leg_req.body, route, target, permit, trace)


def _continuation_base_url(executor: Executor, target: Target) -> str | None:
    """DeepSeek serves prefix completion only on its beta base URL: used when the provider's
    base_url is the preset's default (a configured base_url is taken as it is)."""
    adapter: Any = executor.adapters[target.provider]
    preset = getattr(adapter, "preset", None)
    alt = getattr(preset, "continuation_base_url", None)
    provider = executor.cfg.provider(target.provider)
    if alt is None or provider is None or provider.base_url:
        return None
    return str(alt).rstrip("/")


class ChatFromCompletion:
    """A ``text_completion`` stream seen as ``chat.completion.chunk`` deltas."""

    __slots__ = ("_inner",)

    def __init__(self, inner: StreamDecoder) -> None:
        self._inner = inner

    def feed(self, data: bytes) -> list[StreamChunk]:
        return [_as_chat(c) for c in self._inner.feed(data)]

    def close(self) -> list[StreamChunk]:
        return [_as_chat(c) for c in self._inner.close()]


def _as_chat(chunk: StreamChunk) -> StreamChunk:
    data = chunk.data
    choices = []
    for c in data.get("choices") or ():
        if isinstance(c, dict):
            text = c.get("text")
            delta: JSON = {"content": text} if isinstance(text, str) and text else {}
            choices.append(
                {"index": c.get("index", 0), "delta": delta, "logprobs": None, "finish_reason": c.get("finish_reason")}
            )
    out: JSON = {**data, "object": "chat.completion.chunk", "choices": choices}
    return StreamChunk(out)
