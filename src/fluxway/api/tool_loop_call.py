"""A tool-loop call through the inference path: every model call of the loop (a *round*) is governed
as any call is — its own pre hooks (limits, budget, guardrails, cache), the executor, its own post
hooks (a usage record with that round's tokens and cost, the budget settled, metrics) — and the
client gets one answer whose usage is the sum of every round's.

:func:`fluxway.api.inference.handle` runs round 1's pre hooks and admission as for any call, then
hands over to :meth:`LoopCall.serve`. A round that led to another is closed here; the last round
(the answer, or the one that failed) is left for ``handle`` to close, as it closes any call, through
:attr:`LoopCall.ctx` and :attr:`LoopCall.calls`.

Rounds run whole (not streamed) upstream. A streamed Responses call shows ``response.created`` at
once after round 1, then the ``mcp_list_tools`` and ``mcp_call`` items as the tools run, then the
final answer's events; a streamed chat completion is one SSE stream of the final answer, sent once
the loop is done.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from fluxway.api.asgi import SSE_HEADERS, Send, respond
from fluxway.api.inference import _commit, _observe, _overhead_ms, _routed_headers
from fluxway.canonical import JSON, CanonicalRequest, CanonicalResponse, Endpoint, Usage
from fluxway.errors import GatewayError
from fluxway.ingress.base import Ingress, Session
from fluxway.mcp.loop import Offer, ToolCall, ToolLoop, offer_tools
from fluxway.mcp.loop_request import check_servers
from fluxway.policy.hooks import CallContext, Outcome, Principal, ShortCircuit
from fluxway.policy.pipeline import CallHooks
from fluxway.policy.tags import TAGS
from fluxway.runtime import Runtime
from fluxway.stream_result import assemble, replay_chunks
from fluxway.tokens import completion_tokens, estimate_prompt_tokens

_ROUND_DROPS = ("stream", "stream_options")


def prepare(rt: Runtime, req: CanonicalRequest, principal: Principal) -> tuple[Offer, CanonicalRequest]:
    """Check the MCP entries against the config, offer the key's tools as functions: (the offer,
    round 1's request, whole and with those functions)."""
    entries = req.mcp_tools or ()
    check_servers(entries, [s.name for s in rt.cfg.mcp.servers])
    offer = offer_tools(rt.mcp_service(), principal, entries)
    body = {k: v for k, v in req.body.items() if k not in _ROUND_DROPS}
    tools = [*(body.get("tools") or ()), *offer.functions]
    if tools:
        body["tools"] = tools
    else:
        body.pop("tools", None)
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    return offer, CanonicalRequest(req.endpoint, req.model, body)


def _client_functions(body: JSON, offer: Offer) -> frozenset[str]:
    out = set()
    for t in body.get("tools") or ():
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"] not in offer.names:
            out.add(fn["name"])
    return frozenset(out)


def _estimate(body: JSON, resp: CanonicalResponse, model: str) -> Usage:
    msg = (resp.body.get("choices") or [{}])[0].get("message") or {}
    texts = [msg.get("content") or ""] if isinstance(msg.get("content"), str) else []
    texts += [str((c.get("function") or {}).get("arguments") or "") for c in msg.get("tool_calls") or ()
              if isinstance(c, dict)]
    return Usage(prompt_tokens=estimate_prompt_tokens(body, model), completion_tokens=completion_tokens(texts, model),
                 estimated=True)


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

    async def _round(self, body: JSON, n: int, short: ShortCircuit | None) -> CanonicalResponse:
        rt = self.rt
        if n > 1:
            assert self.outcome is not None
            await self._close(self.outcome)
            req = CanonicalRequest(Endpoint.CHAT, self.ctx.request.model, body)
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
            return resp
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

    async def _close(self, outcome: Outcome) -> None:
        """A round that led to another: its post hooks (usage record, budget, limits) and metrics."""
        await self.calls.post_early(outcome)
        await self.calls.post_late(outcome)
        _observe(self.rt, self.ingress, self.endpoint, self.ctx, outcome)

    def _headers(self) -> list[tuple[bytes, bytes]]:
        provider, model, cache, attempts = self._provider
        return _routed_headers(self.ingress, self.ctx, provider or "fluxway", model, cache, attempts,
                               self.outcome.overhead_ms or 0.0 if self.outcome else 0.0)

    async def serve(self, short: ShortCircuit | None, send: Send) -> Outcome:
        rt, ctx = self.rt, self.ctx
        principal = ctx.principal
        assert principal is not None
        streaming = self.client_request.stream
        enc: Any = self.ingress.stream_encoder(self.client_request, ctx.request_id) if streaming else None
        live = enc is not None and callable(getattr(enc, "mcp_call_started", None))  # Responses events

        async def start() -> None:
            if not self._started:
                self._started = True
                await send({"type": "http.response.start", "status": 200, "headers": [*self._headers(), *SSE_HEADERS]})
                out = b"".join(enc.mcp_list_tools(x.id, x.server_label, x.tools) for x in self.offer.listings)
                await send({"type": "http.response.body", "body": enc.begin() + out, "more_body": True})

        async def on_event(kind: str, call: ToolCall) -> None:
            if not live:
                return
            await start()
            data = enc.mcp_call_started(call) if kind == "started" else enc.mcp_call_done(call)
            await send({"type": "http.response.body", "body": data, "more_body": True})

        async def call_model(body: JSON, n: int) -> CanonicalResponse:
            return await self._round(body, n, short if n == 1 else None)

        loop = ToolLoop(
            rt.mcp_service(), principal, self.offer, client_functions=_client_functions(ctx.request.body, self.offer),
            headers=ctx.headers, request_id=ctx.request_id, max_rounds=rt.cfg.tool_loop.max_rounds,
            tool_timeout_s=rt.cfg.tool_loop.tool_timeout_s,
        )
        try:
            result = await loop.run(ctx.request.body, call_model, on_event)
        except GatewayError as err:
            if not self._started:
                raise  # nothing sent yet: handle() answers it in the caller's shape
            outcome = Outcome(err.status, error=err, latency_ms=(time.perf_counter() - self.ctx.started) * 1000.0)
            self.outcome = outcome
            self.ctx.partial = "a later round of the tool loop failed"
            await self.calls.post_early(outcome)
            await send({"type": "http.response.body", "body": enc.error(err), "more_body": False})
            return outcome
        final_outcome = self.outcome
        assert final_outcome is not None
        outcome = final_outcome
        set_loop = getattr(self.ingress, "set_tool_loop", None)
        if set_loop is not None:
            set_loop(self.offer.listings, result.calls)
        final = result.response
        if not streaming:
            payload = self.ingress.render(self.client_request, final)
            hdrs = [*self._headers(), (b"content-type", self.ingress.content_type.encode())]
            await self.calls.post_early(outcome)
            await _commit(self.session, self.ctx.request_id)
            await respond(send, 200, payload, hdrs)
            return outcome
        if live:
            await start()
            last = b"".join(enc.chunk(c) for c in replay_chunks(final)) + enc.finish(result.usage)
        else:
            await send({"type": "http.response.start", "status": 200, "headers": [*self._headers(), *SSE_HEADERS]})
            self._started = True
            note: JSON = {k: final.body[k] for k in ("id", "created", "model") if k in final.body}
            note.update({"object": "chat.completion.chunk", "choices": [], "x_fluxway": final.body.get("x_fluxway")})
            last = (b"".join(enc.chunk(c) for c in replay_chunks(final)) + b"data: " + orjson.dumps(note) + b"\n\n"
                    + enc.finish(result.usage))
        await self.calls.post_early(outcome)
        await _commit(self.session, self.ctx.request_id)
        await send({"type": "http.response.body", "body": last, "more_body": False})
        return outcome
