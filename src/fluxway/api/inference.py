"""One inference call: ingress -> pre hooks -> route -> executor -> (stream hooks) -> egress -> post hooks.

One function serves every ingress shape and endpoint; the ingress object decides the wire format
(its body, errors and headers), the pipeline (:mod:`fluxway.policy.pipeline`) which hooks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from fluxway.api.asgi import SSE_HEADERS, RawHeaders, Receive, Scope, Send, read_body, request_headers, respond
from fluxway.canonical import Endpoint, StreamChunk, UpstreamError, Usage
from fluxway.errors import GatewayError
from fluxway.ingress.base import Ingress, Session, StreamEncoder
from fluxway.policy.hooks import CallContext, Outcome, ShortCircuit
from fluxway.policy.pipeline import CallHooks
from fluxway.policy.pricing import COST
from fluxway.policy.tags import HEADER as TAGS_HEADER
from fluxway.policy.tags import TAGS, parse_tags
from fluxway.request_id import normalise_request_id
from fluxway.request_log import log_call
from fluxway.routing.stream import RoutedStream
from fluxway.runtime import Runtime
from fluxway.stream_result import assemble, replay_chunks
from fluxway.tokens import completion_tokens, estimate_prompt_tokens

if TYPE_CHECKING:
    from fluxway.events.alerts.engine import AlertEngine

log = logging.getLogger("fluxway.request")

# How often an open stream's provisional record is refreshed with the tokens delivered so far.
_CHECKPOINT_S = 1.0

_CLIENT_GONE = GatewayError(499, "client closed the stream", code="client_closed")
_SHUTDOWN = GatewayError(
    503, "the gateway is shutting down; the call was cut", type="server_error", code="shutting_down"
)
_INTERNAL = GatewayError(500, "internal gateway error; see the gateway log", type="server_error", code="internal_error")




def _error_headers(ingress: Ingress, request_id: str, err: GatewayError) -> RawHeaders:
    headers: RawHeaders = [
        (b"content-type", ingress.content_type.encode()),
        (b"x-request-id", request_id.encode()),
        *ingress.extra_headers(request_id),
    ]
    for k, v in err.headers.items():
        headers.append((k.encode("latin-1"), v.encode("latin-1")))
    return headers


def _overhead_ms(ctx: CallContext, upstream_s: float) -> float:
    """Time from the request's arrival to its answer's headers, less the upstream's share."""
    return max((time.perf_counter() - ctx.started - upstream_s) * 1000.0, 0.0)


def _routed_headers(
    ingress: Ingress, ctx: CallContext, provider: str, model: str, cache: str, attempts: int, overhead_ms: float
) -> RawHeaders:
    headers: RawHeaders = [
        (b"x-request-id", ctx.request_id.encode()),
        (b"x-fluxway-provider", provider.encode()),
        (b"x-fluxway-model", model.encode("latin-1", "replace")),
        (b"x-fluxway-attempts", str(attempts).encode()),
        (b"x-fluxway-cache", cache.encode()),
        (b"x-fluxway-overhead-ms", f"{overhead_ms:.3f}".encode()),
        *ingress.extra_headers(ctx.request_id),
    ]
    for k, v in ctx.response_headers.items():
        headers.append((k.encode("latin-1"), v.encode("latin-1")))
    return headers


def _upstream_failure(err: UpstreamError) -> GatewayError:
    status = 504 if err.kind.value == "timeout" else 502
    return GatewayError(
        status, f"{err.target}: {err.kind.value}: {err.message}", type="server_error", code=err.kind.value
    )


async def _commit(session: Session | None, request_id: str) -> None:
    """The session's final state, stored before the answer leaves (a failure is logged, not sent)."""
    if session is None:
        return
    try:
        await session.commit()
    except Exception:
        log.exception("request %s: storing the response failed", request_id)


async def handle(
    rt: Runtime, ingress: Ingress, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send,
    session: Session | None = None,
) -> None:
    started = time.perf_counter()
    headers = request_headers(scope)
    # A client's id only when well formed ([A-Za-z0-9._:-]{1,128}): it goes to headers, logs and the store.
    request_id = normalise_request_id(headers.get("x-request-id")) or rt.next_request_id()
    server = rt.cfg.server
    tracer = rt.tracer
    span = tracer.start_call(headers, endpoint, ingress.name) if tracer is not None else None
    ctx: CallContext | None = None
    calls: CallHooks | None = None
    outcome: Outcome | None = None
    admitted = False
    held: str | None = None  # the key holding a per-key concurrency slot
    try:
        api_key = ingress.api_key(headers)
        principal = await rt.principal(api_key)  # 401 before the body is even read
        tags = parse_tags(headers.get(TAGS_HEADER))
        reading = rt.admission.begin_read(principal)
        try:
            body = await read_body(receive, headers, server.max_body_bytes, server.body_timeout_s, scope)
        finally:
            rt.admission.end_read(reading)
        req = ingress.parse(endpoint, body)
        if session is not None:
            await session.prepare(principal.id)
        if span is not None:
            span.request(req, request_id)
        looped = req
        if req.mcp_tools is not None:  # Fluxway runs the MCP tool loop (api/tool_loop_call.py)
            from fluxway.api import tool_loop_call

            offer, looped = tool_loop_call.prepare(rt, req, principal)
        ctx = CallContext(request_id, ingress.name, headers, api_key, looped, started, principal)
        if tags is not None:
            ctx.put(TAGS, tags)
        calls = rt.pipeline.for_call(ctx)  # which hooks take part: resolved once, the caller known
        short = await calls.pre()
        if short is not None and looped is req:
            outcome = await _answer_short(calls, ingress, short, send, session)
            return
        # Admission only now: the key is known and its limits and budget allowed the call, so a
        # key sending slow bodies or refused calls holds no slot another tenant needs.
        held = rt.admission.enter(ctx.principal)
        admitted = True
        if looped is not req:
            loop = tool_loop_call.LoopCall(rt, ingress, endpoint, req, offer, ctx, calls, span, session)
            try:
                outcome = await loop.serve(short, send, receive)
            finally:  # the last round's hooks are closed below, as any call's
                ctx, calls = loop.ctx, loop.calls
            return
        route = rt.executor.resolve(req.model)
        if req.stream:
            opened = await rt.executor.open_stream(req, route, principal.model_filter, span)
            outcome = await _stream(calls, ingress, opened, receive, send, session)
        else:
            done = await rt.executor.complete(req, route, principal.model_filter, span)
            payload = ingress.render(req, done.response)
            overhead_ms = _overhead_ms(ctx, done.trace.upstream_s)
            hdrs = _routed_headers(ingress, ctx, done.target.provider, done.target.model, "miss",
                                   done.trace.attempts, overhead_ms)
            hdrs.append((b"content-type", ingress.content_type.encode()))
            outcome = Outcome(
                200,
                done.target,
                done.trace.attempts,
                done.response.usage,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                upstream_ms=done.trace.upstream_s * 1000.0,
                overhead_ms=overhead_ms,
                cache="miss",
                tried=done.trace.tried,
                response=done.response if calls.wants_response else None,
            )
            await calls.post_early(outcome)
            await _commit(session, request_id)
            await respond(send, 200, payload, hdrs)
    except GatewayError as err:
        fields = {"request_id": request_id, "status": err.status}
        if err.status >= 500 or err.status == 429:
            log.warning("request %s failed: %s %s", request_id, err.status, err.message, extra=fields)
        else:
            log.info("request %s rejected: %s %s", request_id, err.status, err.message, extra=fields)
        attempts = err.headers.get("x-fluxway-attempts")  # set by the executor when every target failed
        outcome = Outcome(err.status, error=err, latency_ms=(time.perf_counter() - started) * 1000.0,
                          attempts=int(attempts) if attempts else 0, tried=list(err.tried))
        if calls is not None:
            await calls.post_early(outcome)
        await respond(send, err.status, ingress.render_error(err), _error_headers(ingress, request_id, err))
    except asyncio.CancelledError:
        # The server cut the call (shutdown past server.drain_s): record it, then let the cut finish.
        outcome = calls.outcome if calls is not None else None
        if outcome is None:  # nothing sent yet: answer 503 in the caller's shape
            outcome = Outcome(503, error=_SHUTDOWN, latency_ms=(time.perf_counter() - started) * 1000.0)
            if ctx is not None:
                ctx.partial = "cut at shutdown before an answer was sent"
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await respond(send, 503, ingress.render_error(_SHUTDOWN),
                                  _error_headers(ingress, request_id, _SHUTDOWN))
        # Recorded and answered: end cleanly (the server moves on without awaiting this task, and
        # re-raising would only print a traceback per cut call).
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    except Exception:
        log.exception("request %s: internal error", request_id)
        outcome = Outcome(500, error=_INTERNAL, latency_ms=(time.perf_counter() - started) * 1000.0)
        if calls is not None:
            await calls.post_early(outcome)
        await respond(send, 500, ingress.render_error(_INTERNAL), _error_headers(ingress, request_id, _INTERNAL))
    finally:
        if admitted:
            rt.admission.leave(held)
        if outcome is not None:
            _observe(rt, ingress, endpoint, ctx, outcome)
        if span is not None:
            span.finish(outcome)
        if calls is not None and outcome is not None:
            await calls.post_late(outcome)
        if outcome is not None and rt.cfg.observability.logs.requests:
            log_call(log, request_id, headers, ctx, outcome)


def _observe(rt: Runtime, ingress: Ingress, endpoint: Endpoint, ctx: CallContext | None, outcome: Outcome) -> None:
    """The call's metrics and alert windows."""
    # Only configured names become labels: arbitrary client input must not grow the series.
    model = ctx.request.model if ctx is not None else ""
    if model not in rt.executor.routes:
        model = "(direct)" if "/" in model else "(none)"
    cost = _cost_usd(rt, ctx, outcome)
    rt.stats.observe(ingress.name, endpoint.value, model, outcome, cost)
    alerts = rt.alerts
    if alerts is not None:
        _feed_alerts(alerts, model, ctx, outcome, cost)


def _feed_alerts(alerts: AlertEngine, model: str, ctx: CallContext | None, outcome: Outcome, cost: float) -> None:
    """The call, for the alert windows (its provider: the one that answered, else the last tried)."""
    target = outcome.target
    provider = target.provider if target is not None else (
        outcome.tried[-1].partition("/")[0] if outcome.tried else None
    )
    p = ctx.principal if ctx is not None else None
    alerts.observe(model, provider, p.id if p else None, p.team if p else None, outcome.status,
                   outcome.latency_ms, cost, p.budgets if p else ())


def _cost_usd(rt: Runtime, ctx: CallContext | None, outcome: Outcome) -> float:
    """The call's cost as its usage record has it (computed once, shared), else priced here."""
    cost = ctx.get(COST) if ctx is not None else None
    if cost is not None:
        return cost.usd
    if outcome.usage is None or outcome.target is None:
        return 0.0
    return rt.governance.pricer.cost(outcome.target, outcome.usage)[0]


async def _answer_short(
    calls: CallHooks, ingress: Ingress, short: ShortCircuit, send: Send, session: Session | None
) -> Outcome:
    """A pre hook's ready answer, whole or as a stream, whichever the caller asked for."""
    ctx = calls.ctx
    req = ctx.request
    resp = short.response
    if resp is None:
        resp = assemble(short.chunks or (), req.endpoint is Endpoint.COMPLETIONS)
    model = str(resp.body.get("model", ""))
    overhead_ms = _overhead_ms(ctx, 0.0)
    hdrs = _routed_headers(ingress, ctx, short.provider, model, short.cache, 0, overhead_ms)
    outcome = Outcome(200, usage=resp.usage, cache=short.cache, latency_ms=(time.perf_counter() - ctx.started) * 1000.0,
                      overhead_ms=overhead_ms, response=resp if calls.wants_response else None)
    if not req.stream:
        hdrs.append((b"content-type", ingress.content_type.encode()))
        payload = ingress.render(req, resp)
        await calls.post_early(outcome)
        await _commit(session, ctx.request_id)
        await respond(send, 200, payload, hdrs)
        return outcome
    enc = ingress.stream_encoder(req, ctx.request_id)
    chunks = short.chunks if short.chunks is not None else replay_chunks(resp)
    hdrs.extend(SSE_HEADERS)
    await send({"type": "http.response.start", "status": 200, "headers": hdrs})
    body = b"".join(enc.chunk(c) for c in chunks) + enc.finish(resp.usage)
    await calls.post_early(outcome)
    await _commit(session, ctx.request_id)
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return outcome


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


async def _stream(
    calls: CallHooks, ingress: Ingress, opened: RoutedStream, receive: Receive, send: Send, session: Session | None
) -> Outcome:
    ctx = calls.ctx
    enc = ingress.stream_encoder(ctx.request, ctx.request_id)
    overhead_ms = _overhead_ms(ctx, opened.trace.upstream_s)
    hdrs = _routed_headers(ingress, ctx, opened.target.provider, opened.target.model, "miss",
                           opened.trace.attempts, overhead_ms)
    hdrs.extend(SSE_HEADERS)
    ttft_ms = (time.perf_counter() - ctx.started) * 1000.0
    await send({"type": "http.response.start", "status": 200, "headers": hdrs})
    outcome = Outcome(
        200, opened.target, opened.trace.attempts, ttft_ms=ttft_ms, overhead_ms=overhead_ms, cache="miss",
        tried=opened.trace.tried,
    )
    calls.outcome = outcome  # for the record if the server cuts this task

    def provisional() -> None:
        _provisional(calls, opened, outcome)

    async def before_last_frame() -> None:
        if outcome.error_kind is not None and ctx.partial is None:
            ctx.partial = f"upstream failed mid-stream: {outcome.error_kind}"
        _settle(calls, opened, outcome)
        await calls.post_early(outcome)

    async def watch() -> None:
        # The pump runs in this request's own task; a disconnect closes the upstream under it,
        # which ends its read at once (one extra task per stream, no cancellation).
        await _wait_disconnect(receive)
        if not opened.done:
            outcome.status = 499
            outcome.error = _CLIENT_GONE
            ctx.partial = "client closed the stream"
            log.info("request %s: client went away mid-stream; upstream cancelled", ctx.request_id)
            opened.close()

    watcher = asyncio.ensure_future(watch())
    try:
        await _pump(calls, enc, opened, send, outcome, before_last_frame, provisional, session)
    except asyncio.CancelledError:
        # Shutdown past server.drain_s: record what was delivered, tell the client, finish the cut.
        opened.close()
        outcome.status = 503
        outcome.error = _SHUTDOWN
        ctx.partial = "cut at shutdown (server.drain_s)"
        log.warning("request %s: stream cut at shutdown", ctx.request_id)
        await before_last_frame()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):  # a client not reading must not hold the shutdown
                await send({"type": "http.response.body", "body": enc.error(_SHUTDOWN), "more_body": False})
        raise  # handle() finishes the call's hooks
    except Exception:
        log.exception("request %s: stream pump failed", ctx.request_id)
        opened.close()
        if ctx.partial is None:
            ctx.partial = "the gateway failed mid-stream"
    finally:
        watcher.cancel()
    if not calls.early_done:
        _settle(calls, opened, outcome)
    return outcome


def _provisional(calls: CallHooks, opened: RoutedStream, outcome: Outcome) -> None:
    """The usage recorder spools a provisional record, in case of kill -9: once the first chunk is
    on its way (the spool write never delays the time to first token), then again every
    _CHECKPOINT_S with the tokens delivered so far; each replaces the one before."""
    ctx = calls.ctx
    outcome.usage = _estimate_usage(ctx, opened)
    for hook in calls.early_hooks():
        write = getattr(hook, "provisional", None)
        if write is not None:
            try:
                write(ctx, outcome)
            except Exception:
                log.exception("request %s: provisional record failed", ctx.request_id)


def _settle(calls: CallHooks, opened: RoutedStream, outcome: Outcome) -> None:
    ctx = calls.ctx
    outcome.target = opened.target  # the last leg's, after a mid-stream failover
    outcome.usage = opened.usage or _estimate_usage(ctx, opened)
    calls.settle_response(outcome)
    outcome.latency_ms = (time.perf_counter() - ctx.started) * 1000.0
    outcome.upstream_ms = opened.trace.upstream_s * 1000.0


async def _pump(
    calls: CallHooks,
    enc: StreamEncoder,
    opened: RoutedStream,
    send: Send,
    outcome: Outcome,
    before_last_frame: Callable[[], Awaitable[None]],
    checkpoint: Callable[[], None],
    session: Session | None = None,
) -> None:
    first_chunks: Sequence[StreamChunk] = opened.first
    rest: AsyncIterator[StreamChunk] = opened.rest()
    if calls.watches_stream():  # stream hooks, or a post hook wanting the assembled answer
        first_chunks = await calls.through(first_chunks)
        rest = calls.stream(rest)
    first = b"".join(enc.chunk(c) for c in first_chunks)
    if first:
        await send({"type": "http.response.body", "body": first, "more_body": True})
    checkpoint()
    due = time.monotonic() + _CHECKPOINT_S
    try:
        async for chunk in rest:
            data = enc.chunk(chunk)
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            if time.monotonic() >= due:
                checkpoint()
                due = time.monotonic() + _CHECKPOINT_S
    except UpstreamError as err:
        if outcome.error is _CLIENT_GONE:  # our own close: nobody is listening any more
            await before_last_frame()
            return
        err.target = err.target or opened.target.key
        gerr = _upstream_failure(err)
        log.warning("stream from %s broke mid-way: %s %s", opened.target.key, err.kind.value, err.message)
        outcome.error = gerr
        outcome.error_kind = err.kind.value
        await before_last_frame()
        await send({"type": "http.response.body", "body": enc.error(gerr), "more_body": False})
        return
    await before_last_frame()  # settles outcome.usage: the upstream's, else Fluxway's own count
    last = enc.finish(outcome.usage)
    await _commit(session, calls.ctx.request_id)  # stored before its final event leaves
    await send({"type": "http.response.body", "body": last, "more_body": False})


def _estimate_usage(ctx: CallContext, opened: RoutedStream) -> Usage:
    """No usage from the upstream: Fluxway's own count (:mod:`fluxway.tokens`), marked as an estimate."""
    model = opened.target.model
    prompt = ctx.prompt_tokens  # counted once, though a long stream is checkpointed often
    if prompt is None:
        prompt = ctx.prompt_tokens = estimate_prompt_tokens(ctx.request.body, model)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion_tokens(opened.texts, model),
        estimated=True,
    )
