"""A tool-loop call through the inference path: every model call of the loop (a *round*) is governed
as any call is — its own pre hooks (limits, budget, guardrails, cache), the executor, its own post
hooks (a usage record with that round's tokens and cost, the budget settled, metrics) — and the
client gets one answer whose usage is the sum of every round's.

:func:`fluxway.api.inference.handle` runs round 1's pre hooks and admission as for any call, then
hands over to :meth:`LoopCall.serve`. A round that led to another is closed here; the last round
(the answer, or the one that failed) is left for ``handle`` to close, as it closes any call, through
:attr:`LoopCall.ctx` and :attr:`LoopCall.calls`.

A streamed call streams every round upstream and shows the client each round's text (and
reasoning) as it comes, token by token; the MCP tool calls a round makes are held back, run, and
shown as ``mcp_call`` items (Responses) once they start and end; the next round then streams on in
the same client stream. ``response.created`` leaves with round 1's first chunk, before any tool
item. A whole (not streamed) call runs its rounds whole.

What the model wrote beside a round's tool calls is the client's to see: its own message item
before those calls (Responses), or, in a chat completion, the answer's content joined with a blank
line before the next round's text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fluxway.api.asgi import SSE_HEADERS, Receive, Send, respond
from fluxway.api.inference import (
    _CLIENT_GONE,
    _commit,
    _observe,
    _overhead_ms,
    _provisional,
    _routed_headers,
    _settle,
    _upstream_failure,
    _wait_disconnect,
)
from fluxway.canonical import JSON, CanonicalRequest, CanonicalResponse, Endpoint, StreamChunk, UpstreamError, Usage
from fluxway.errors import GatewayError
from fluxway.ingress.base import Ingress, Session
from fluxway.mcp.loop import Offer, ToolCall, ToolLoop, offer_tools
from fluxway.mcp.loop_request import check_servers, tool_function
from fluxway.policy.hooks import CallContext, Outcome, Principal, ShortCircuit
from fluxway.policy.pipeline import CallHooks
from fluxway.policy.tags import TAGS
from fluxway.routing.stream import RoutedStream
from fluxway.runtime import Runtime
from fluxway.stream_result import StreamAssembler, assemble, replay_chunks
from fluxway.tokens import completion_tokens, estimate_prompt_tokens

_ROUND_DROPS = ("stream", "stream_options")
_HELD = frozenset(("tool_calls", "role"))  # delta fields a streamed round does not show as they come
_JOIN = "\n\n"  # between the texts of a chat completion's rounds


class _ClientGone(Exception):
    """The client closed the stream: no further round is run."""


def prepare(rt: Runtime, req: CanonicalRequest, principal: Principal) -> tuple[Offer, CanonicalRequest]:
    """Check the MCP entries against the config, offer the key's tools as functions: (the offer,
    round 1's request, whole and with those functions)."""
    entries = req.mcp_tools or ()
    check_servers(entries, [s.name for s in rt.cfg.mcp.servers])
    offer = offer_tools(rt.mcp_service(), principal, entries)
    body = {k: v for k, v in req.body.items() if k not in _ROUND_DROPS}
    if req.stream:  # every round streams upstream, its usage at the end
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    tools = [*(body.get("tools") or ()), *offer.functions]
    if tools:
        body["tools"] = tools
        forced = tool_function(body.get("tool_choice"))  # a function the client forces
        if forced is not None and forced not in {tool_function(t) for t in tools}:
            raise GatewayError(400, f"'tool_choice': function '{forced}' is not among the tools offered to this "
                               "key", param="tool_choice", code="invalid_value")
    else:
        body.pop("tools", None)
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    return offer, CanonicalRequest(req.endpoint, req.model, body, stream=req.stream, include_usage=req.stream)


def _client_functions(body: JSON, offer: Offer) -> frozenset[str]:
    names = (tool_function(t) for t in body.get("tools") or ())
    return frozenset(n for n in names if n is not None and n not in offer.names)


def _estimate(body: JSON, resp: CanonicalResponse, model: str) -> Usage:
    msg = (resp.body.get("choices") or [{}])[0].get("message") or {}
    texts = [msg.get("content") or ""] if isinstance(msg.get("content"), str) else []
    texts += [str((c.get("function") or {}).get("arguments") or "") for c in msg.get("tool_calls") or ()
              if isinstance(c, dict)]
    return Usage(prompt_tokens=estimate_prompt_tokens(body, model), completion_tokens=completion_tokens(texts, model),
                 estimated=True)


def _joined(calls: list[ToolCall], final: CanonicalResponse) -> CanonicalResponse:
    """A chat completion's answer: the texts of every round, each round's after the one before."""
    said = [c.preface for c in calls if c.preface]
    if not said:
        return final
    choices = final.body.get("choices")
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        return final
    msg = dict(choices[0].get("message") or {})
    last = msg.get("content")
    msg["content"] = _JOIN.join([*said, *([last] if isinstance(last, str) and last else [])])
    body = {**final.body, "choices": [{**choices[0], "message": msg}, *choices[1:]]}
    return CanonicalResponse(body, final.usage)


def _tail(final: CanonicalResponse, head: JSON) -> JSON:
    """The stream's closing chunk: the client's own function calls (an MCP round's were never
    shown) and the finish reason; the text went out as it came."""
    choices = final.body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    msg = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    assert isinstance(msg, dict)
    delta: JSON = {}
    calls = msg.get("tool_calls")
    if isinstance(calls, list) and calls:
        delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(calls) if isinstance(c, dict)]
    return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason") or "stop"}]}


class LoopCall:
    def __init__(
        self, rt: Runtime, ingress: Ingress, endpoint: Endpoint, client_request: CanonicalRequest, offer: Offer,
        ctx: CallContext, calls: CallHooks, span: Any, session: Session | None,
    ) -> None:
        self.rt = rt
        self.ingress = ingress
        self.endpoint = endpoint
        self.client_request = client_request
        self.offer = offer
        self.ctx = ctx  # the current round's: handle() closes the last one
        self.calls = calls
        self.span = span
        self.session = session
        self.outcome: Outcome | None = None
        self._provider = ("", "", "miss", 0)  # the last round's (provider, model, cache, attempts)
        self._started = False
        self._streaming = client_request.stream
        self._enc: Any = ingress.stream_encoder(client_request, ctx.request_id) if self._streaming else None
        # Responses events show the tool loop's items; a chat stream shows the text only.
        self._live = self._enc is not None and callable(getattr(self._enc, "mcp_call_started", None))
        self._send: Send | None = None
        self._opened: RoutedStream | None = None  # the round streaming now
        self._gone = False  # the client closed the stream
        self._head: JSON = {}  # the chunks' id, created and model: round 1's, for every round
        self._said_round = 0  # the round that showed text last (a chat stream joins the next round's to it)
        self._said_any = False  # a delta has been shown (the first carries the role)

    # -- one round ---------------------------------------------------------------------------

    async def _round(self, body: JSON, n: int, short: ShortCircuit | None) -> CanonicalResponse:
        rt = self.rt
        if self._gone:
            raise _ClientGone
        if n > 1:
            assert self.outcome is not None
            await self._close(self.outcome)
            req = CanonicalRequest(Endpoint.CHAT, self.ctx.request.model, body, stream=self._streaming,
                                   include_usage=self._streaming)
            prev = self.ctx
            ctx = CallContext(prev.request_id, prev.ingress, prev.headers, prev.api_key, req,
                              principal=prev.principal)
            tags = prev.get(TAGS)
            if tags is not None:
                ctx.put(TAGS, tags)
            self.ctx, self.calls, self.outcome = ctx, rt.pipeline.for_call(ctx), None
            short = await self.calls.pre()
        ctx = self.ctx
        started = time.perf_counter()
        if short is not None:
            resp = short.response or assemble(short.chunks or ())
            self.outcome = Outcome(200, usage=resp.usage, cache=short.cache,
                                   latency_ms=(time.perf_counter() - ctx.started) * 1000.0, overhead_ms=0.0,
                                   response=resp if self.calls.wants_response else None)
            self._provider = (short.provider, str(resp.body.get("model", "")), short.cache, 0)
            if self._streaming:
                await self._start()
                for c in replay_chunks(resp):
                    await self._show(c, n)
            return resp
        if self._streaming:
            return await self._stream_round(n)
        principal = ctx.principal
        done = await rt.executor.complete(ctx.request, rt.executor.resolve(ctx.request.model),
                                          principal.model_filter if principal else None, self.span)
        self.outcome = Outcome(
            200, done.target, done.trace.attempts, done.response.usage,
            latency_ms=(time.perf_counter() - started) * 1000.0, upstream_ms=done.trace.upstream_s * 1000.0,
            overhead_ms=_overhead_ms(ctx, done.trace.upstream_s), cache="miss", tried=done.trace.tried,
            response=done.response if self.calls.wants_response else None,
        )
        self._provider = (done.target.provider, done.target.model, "miss", done.trace.attempts)
        resp = done.response
        if resp.usage is None:  # no usage from the upstream: Fluxway's own count, for the record and the sum
            usage = _estimate(ctx.request.body, resp, done.target.model)
            self.outcome.usage = usage
            resp = CanonicalResponse(resp.body, usage, resp.raw)
        return resp

    async def _stream_round(self, n: int) -> CanonicalResponse:
        """One round streamed upstream: its text shown as it comes, its tool calls held back; the
        answer it adds up to, for the loop."""
        rt, ctx, calls = self.rt, self.ctx, self.calls
        principal = ctx.principal
        opened = await rt.executor.open_stream(ctx.request, rt.executor.resolve(ctx.request.model),
                                               principal.model_filter if principal else None, self.span)
        self._opened = opened
        outcome = Outcome(
            200, opened.target, opened.trace.attempts, ttft_ms=(time.perf_counter() - ctx.started) * 1000.0,
            overhead_ms=_overhead_ms(ctx, opened.trace.upstream_s), cache="miss", tried=opened.trace.tried,
        )
        self.outcome = calls.outcome = outcome  # for the record if the server cuts this task
        self._provider = (opened.target.provider, opened.target.model, "miss", opened.trace.attempts)
        first: Sequence[StreamChunk] = opened.first
        rest: AsyncIterator[StreamChunk] = opened.rest()
        if calls.watches_stream():  # stream hooks (guardrails), or a post hook wanting the answer
            first = await calls.through(first)
            rest = calls.stream(rest)
        asm = StreamAssembler()
        try:
            await self._start()
            for c in first:
                asm.feed(c)
                await self._show(c, n)
            _provisional(calls, opened, outcome)
            async for c in rest:
                asm.feed(c)
                await self._show(c, n)
        except UpstreamError as err:
            _settle(calls, opened, outcome)
            if self._gone:
                raise _ClientGone from None
            err.target = err.target or opened.target.key
            gerr = _upstream_failure(err)
            outcome.error, outcome.error_kind = gerr, err.kind.value
            ctx.partial = f"upstream failed mid-stream: {err.kind.value}"
            raise gerr from None
        finally:
            self._opened = None
            if not opened.done:
                opened.close()
        _settle(calls, opened, outcome)
        if self._gone:
            raise _ClientGone
        resp = asm.response()
        return CanonicalResponse(resp.body, outcome.usage)

    async def _show(self, chunk: StreamChunk, n: int) -> None:
        """A round's chunk as the client sees it: its text, reasoning or refusal, as it comes (the
        tool calls, the usage and the finish reason wait for the loop's end)."""
        data = chunk.data
        if not self._head:
            self._head = {"id": data.get("id") or self.ctx.request_id, "object": "chat.completion.chunk",
                          "created": data.get("created") or int(time.time()), "model": data.get("model") or ""}
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            shown = {k: v for k, v in delta.items() if k not in _HELD and v not in (None, "", [])}
            if not shown:
                continue
            text = shown.get("content")
            if isinstance(text, str) and not self._live:
                if self._said_round and n != self._said_round:  # a chat completion: a blank line between rounds
                    shown["content"] = _JOIN + text
                self._said_round = n
            if not self._said_any:
                shown = {"role": "assistant", **shown}
                self._said_any = True
            await self._emit(self._enc.chunk(StreamChunk(
                {**self._head, "choices": [{"index": 0, "delta": shown, "finish_reason": None}]})))

    async def _emit(self, data: bytes, last: bool = False) -> None:
        if data and not self._gone and self._send is not None:
            await self._send({"type": "http.response.body", "body": data, "more_body": not last})

    async def _close(self, outcome: Outcome) -> None:
        """A round that led to another: its post hooks (usage record, budget, limits) and metrics."""
        await self.calls.post_early(outcome)
        await self.calls.post_late(outcome)
        _observe(self.rt, self.ingress, self.endpoint, self.ctx, outcome)

    def _headers(self) -> list[tuple[bytes, bytes]]:
        provider, model, cache, attempts = self._provider
        return _routed_headers(self.ingress, self.ctx, provider or "fluxway", model, cache, attempts,
                               self.outcome.overhead_ms or 0.0 if self.outcome else 0.0)

    async def _start(self) -> None:
        """The stream's head, once (with round 1's first chunk): the status, the headers and, for
        Responses, ``response.created`` and the tool listings."""
        if self._started or self._send is None:
            return
        self._started = True
        await self._send({"type": "http.response.start", "status": 200, "headers": [*self._headers(), *SSE_HEADERS]})
        if self._live:
            enc = self._enc
            out = b"".join(enc.mcp_list_tools(x.id, x.server_label, x.tools) for x in self.offer.listings)
            await self._emit(enc.begin() + out)

    async def _watch(self, receive: Receive) -> None:
        await _wait_disconnect(receive)
        self._gone = True
        opened = self._opened
        if opened is not None and not opened.done:
            opened.close()  # ends the round's read at once

    # -- the whole loop ----------------------------------------------------------------------

    async def serve(self, short: ShortCircuit | None, send: Send, receive: Receive | None = None) -> Outcome:
        rt, ctx = self.rt, self.ctx
        principal = ctx.principal
        assert principal is not None
        self._send = send
        enc = self._enc

        async def on_event(kind: str, call: ToolCall) -> None:
            if not self._live:
                return
            await self._start()
            await self._emit(enc.mcp_call_started(call) if kind == "started" else enc.mcp_call_done(call))

        async def call_model(body: JSON, n: int) -> CanonicalResponse:
            return await self._round(body, n, short if n == 1 else None)

        loop = ToolLoop(
            rt.mcp_service(), principal, self.offer, client_functions=_client_functions(ctx.request.body, self.offer),
            headers=ctx.headers, request_id=ctx.request_id, max_rounds=rt.cfg.tool_loop.max_rounds,
            tool_timeout_s=rt.cfg.tool_loop.tool_timeout_s,
        )
        watcher = asyncio.ensure_future(self._watch(receive)) if self._streaming and receive is not None else None
        try:
            result = await loop.run(ctx.request.body, call_model, on_event, self.client_request.max_tool_calls)
        except _ClientGone:
            return await self._client_gone()
        except GatewayError as err:
            if not self._started:
                raise  # nothing sent yet: handle() answers it in the caller's shape
            outcome = self.outcome
            if outcome is None or outcome.error is not err:
                outcome = Outcome(err.status, error=err, latency_ms=(time.perf_counter() - self.ctx.started) * 1000.0)
                self.ctx.partial = "a later round of the tool loop failed"
            self.outcome = outcome
            await self.calls.post_early(outcome)
            await self._emit(enc.error(err), last=True)
            return outcome
        finally:
            if watcher is not None:
                watcher.cancel()
        outcome = self.outcome
        assert outcome is not None
        set_loop = getattr(self.ingress, "set_tool_loop", None)
        final = result.response
        if set_loop is not None:  # Responses: the listings, the calls (and what was said beside them) as items
            set_loop(self.offer.listings, result.calls)
        elif not self._streaming:  # a chat completion: every round's text in the answer
            final = _joined(result.calls, final)
        if not self._streaming:
            payload = self.ingress.render(self.client_request, final)
            hdrs = [*self._headers(), (b"content-type", self.ingress.content_type.encode())]
            await self.calls.post_early(outcome)
            await _commit(self.session, self.ctx.request_id)
            await respond(send, 200, payload, hdrs)
            return outcome
        await self._start()  # a loop that never showed a chunk (a short-circuited round with none)
        if not self._head:
            self._head = {"id": final.body.get("id") or ctx.request_id, "object": "chat.completion.chunk",
                          "created": final.body.get("created") or int(time.time()), "model": final.body.get("model")}
        last = enc.chunk(StreamChunk(_tail(final, self._head)))
        if not self._live:
            note: JSON = {**self._head, "choices": [], "x_fluxway": final.body.get("x_fluxway")}
            if self.client_request.include_usage:
                note["usage"] = result.usage.to_openai()
            last += enc.chunk(StreamChunk(note))
        await self.calls.post_early(outcome)
        last += enc.finish(result.usage)  # Responses: response.completed, whose Response is stored next
        await _commit(self.session, self.ctx.request_id)
        await self._emit(last, last=True)
        return outcome

    async def _client_gone(self) -> Outcome:
        """The client left mid-loop: the current round's record says so (the earlier ones are closed)."""
        outcome = self.outcome
        if outcome is None:
            outcome = self.outcome = Outcome(499, latency_ms=(time.perf_counter() - self.ctx.started) * 1000.0)
        outcome.status, outcome.error = 499, _CLIENT_GONE
        self.ctx.partial = "client closed the stream"
        await self.calls.post_early(outcome)
        return outcome
