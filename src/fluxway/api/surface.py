"""The pass-through surface: images, audio, rerank, files and batches, governed like inference.

Each call runs the hook pipeline (auth, limits, budget, usage; guardrails and cache are chat-shaped
and do not take part, nor does budget for files and batches), takes an admission slot, is routed by
the executor (retries, failover, breakers, key rotation) and its answer is passed through as the
upstream sent it: JSON, or binary audio streamed as it arrives. Bodies are not translated; the
adapter only says where an endpoint lives and signs the call (:class:`SurfaceAdapter`).

Routing: a call with a ``model`` goes to the first targets of that public model whose provider
offers the endpoint (400 naming the providers when none does). Files and batches have no model:
see :mod:`fluxway.api.surface_objects` (docs/surface.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

import orjson

from fluxway.adapters.base import SurfaceAdapter
from fluxway.api.asgi import (
    JSON_CT,
    Message,
    RawHeaders,
    Receive,
    Scope,
    Send,
    read_body,
    request_headers,
    respond,
)
from fluxway.api.multipart import Form
from fluxway.api.multipart import encode as encode_form
from fluxway.api.multipart import parse as parse_form
from fluxway.canonical import JSON, SURFACE_PATHS, CanonicalRequest, Credentials, Endpoint, HttpCall, Target
from fluxway.config import RetryConfig
from fluxway.errors import GatewayError, bad_request, missing_field
from fluxway.ingress.openai import OpenAIIngress
from fluxway.policy.hooks import CallContext, Outcome, Principal
from fluxway.policy.media_cost import free, media_cost
from fluxway.policy.pipeline import Pipeline
from fluxway.policy.pricing import COST, CallCost
from fluxway.policy.tags import HEADER as TAGS_HEADER
from fluxway.policy.tags import TAGS, parse_tags
from fluxway.request_id import normalise_request_id
from fluxway.request_log import log_call
from fluxway.routing.executor import Route
from fluxway.routing.health import Permit
from fluxway.routing.outcome import Trace
from fluxway.routing.transport import OpenStream
from fluxway.runtime import Runtime

log = logging.getLogger("fluxway.request")

Handler = Callable[[Runtime, Scope, Receive, Send], Awaitable[None]]

# Upstream answers passed to the caller as they are (the caller's fault, or an object that does
# not exist there): no retry, no failover, no breaker penalty.
PASSED_STATUSES = frozenset({400, 404, 409, 413, 415, 422})
# The stages that take part (guardrails and cache act on chat messages); files and batches cost nothing.
_MODEL_STAGES = frozenset({"auth", "limits", "budget", "usage"})
_OBJECT_STAGES = frozenset({"auth", "limits", "usage"})
_ONE_TRY = RetryConfig(attempts=1)  # uploads and creations are not retried (they are not idempotent)
_INTERNAL = GatewayError(500, "internal gateway error; see the gateway log", type="server_error", code="internal_error")


def public_path(endpoint: Endpoint) -> str:
    return "/v1" + SURFACE_PATHS[endpoint]


@dataclass(slots=True)
class Incoming:
    """One request on the surface, its caller known and its body read."""

    rt: Runtime
    endpoint: Endpoint
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    principal: Principal
    request_id: str


@dataclass(slots=True)
class Upstream:
    """What the upstream answered: a whole body or an open stream (binary content)."""

    status: int
    headers: Mapping[str, str]
    target: Target
    body: bytes = b""
    stream: OpenStream | None = None


@dataclass(slots=True)
class Answer:
    """What the caller gets, and what the post hooks record."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    stream: OpenStream | None = None
    target: Target | None = None
    trace: Trace = field(default_factory=Trace)
    cost: CallCost = field(default_factory=free)

    @classmethod
    def of(cls, up: Upstream, trace: Trace, cost: CallCost | None = None) -> Answer:
        ct = up.headers.get("content-type") or "application/json"
        return cls(up.status, up.body, ct, up.stream, up.target, trace, cost or free())


Work = Callable[[CallContext], Awaitable[Answer]]
Prepare = Callable[[Incoming], tuple[CanonicalRequest, Work]]


def json_object(body: bytes) -> JSON:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    return data


def json_answer(data: object, status: int = 200) -> Answer:
    return Answer(status, orjson.dumps(data))


def upstream_json(up: Upstream) -> JSON | None:
    """The answer as a JSON object (None for another content type or a non-object)."""
    if up.stream is not None or not up.body:
        return None
    try:
        data = orjson.loads(up.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def not_supported(rt: Runtime, providers: list[str], endpoint: Endpoint, param: str | None = "model") -> GatewayError:
    named = ", ".join(
        f"provider '{p}' (type {cfg.type})" for p in providers if (cfg := rt.cfg.provider(p)) is not None
    )
    verb = "does" if len(providers) == 1 else "do"
    return GatewayError(400, f"{named} {verb} not support {public_path(endpoint)}", param=param,
                        code="unsupported_endpoint")


def check_capable(rt: Runtime, route: Route, endpoint: Endpoint, principal: Principal) -> None:
    """400 naming the providers when no target of the model (or its fallbacks) offers the endpoint."""
    ex = rt.executor
    providers = list(dict.fromkeys(t.provider for r in ex.chain(route, principal.model_filter) for t in r.targets))
    if not any(ex.adapters[p].supports(endpoint) for p in providers):
        raise not_supported(rt, providers, endpoint)


def surface_adapter(rt: Runtime, provider: str) -> SurfaceAdapter:
    return cast(SurfaceAdapter, rt.executor.adapters[provider])


BuildCall = Callable[[SurfaceAdapter, Target, Credentials], HttpCall]


async def send_routed(
    inc: Incoming, req: CanonicalRequest, route: Route, build: BuildCall, *, stream: bool = False
) -> tuple[Upstream, Trace]:
    """Send through the executor: the route's capable targets in plan order, with its retries."""
    ex = inc.rt.executor
    trace = Trace()

    async def attempt(req: CanonicalRequest, r: Route, target: Target, permit: Permit, trace: Trace) -> Upstream:
        adapter = surface_adapter(inc.rt, target.provider)
        call = build(adapter, target, await ex.authorize(target, permit))
        timeouts = ex.timeouts(target, r)
        provider = inc.rt.cfg.provider(target.provider)
        limit = provider.max_response_bytes if provider is not None else 64 * 1024 * 1024
        if not stream:
            reply = await ex.transport.send(call, timeouts, limit)
            trace.upstream_s += reply.elapsed
            if reply.status >= 400 and reply.status not in PASSED_STATUSES:
                raise adapter.classify_error(reply.status, reply.headers, reply.body)
            ex.board.record_success(permit, total_s=reply.elapsed)
            return Upstream(reply.status, reply.headers, target, reply.body)
        t0 = time.perf_counter()
        opened = await ex.transport.open_stream(call, timeouts)
        trace.upstream_s += time.perf_counter() - t0
        if opened.status >= 400:
            try:
                body = await opened.read(limit)
            finally:
                opened.close()
            if opened.status not in PASSED_STATUSES:
                raise adapter.classify_error(opened.status, opened.headers, body)
            ex.board.record_success(permit)
            return Upstream(opened.status, opened.headers, target, body)
        ex.board.record_success(permit)
        return Upstream(opened.status, opened.headers, target, stream=opened)

    up = await ex.run(req, route, attempt, trace, frozenset(), inc.principal.model_filter)
    return up, trace


def provider_route(provider: str, endpoint: Endpoint, retry: RetryConfig = _ONE_TRY) -> Route:
    """A route to one provider, for calls that name no model (files, batches)."""
    return Route(f"{provider}/{endpoint.value}", (Target(provider, endpoint.value),), retry=retry)


# -- model-bound endpoints --------------------------------------------------------------------------


def _model_of(data: Mapping[str, object]) -> str:
    model = data.get("model")
    if model is None or model == "":
        raise missing_field("model")
    if not isinstance(model, str):
        raise bad_request("'model' must be a string", param="model", code="invalid_type")
    return model


def _model_json(endpoint: Endpoint) -> Prepare:
    """images/generations, audio/speech, rerank: a JSON body with ``model``."""

    def prepare(inc: Incoming) -> tuple[CanonicalRequest, Work]:
        data = json_object(inc.body)
        model = _model_of(data)
        req = CanonicalRequest(endpoint, model, data)

        async def work(ctx: CallContext) -> Answer:
            rt = inc.rt
            route = rt.executor.resolve(model)
            check_capable(rt, route, endpoint, inc.principal)

            def build(adapter: SurfaceAdapter, target: Target, creds: Credentials) -> HttpCall:
                body = orjson.dumps({**data, "model": target.model})
                return adapter.surface_call(endpoint, target, creds, "POST", body=body,
                                            content_type="application/json")

            up, trace = await send_routed(inc, req, route, build, stream=endpoint is Endpoint.SPEECH)
            cost = media_cost(rt.governance.pricer, endpoint, up.target, data, upstream_json(up)) \
                if up.status < 400 else free()
            return Answer.of(up, trace, cost)

        return req, work

    return prepare


def _transcriptions(inc: Incoming) -> tuple[CanonicalRequest, Work]:
    form = parse_form(inc.body, inc.headers.get("content-type"))
    fields = form.fields()
    model = _model_of(fields)
    if form.file("file") is None:
        raise missing_field("file")
    req = CanonicalRequest(Endpoint.TRANSCRIPTIONS, model, dict(fields))

    async def work(ctx: CallContext) -> Answer:
        rt = inc.rt
        route = rt.executor.resolve(model)
        check_capable(rt, route, Endpoint.TRANSCRIPTIONS, inc.principal)

        def build(adapter: SurfaceAdapter, target: Target, creds: Credentials) -> HttpCall:
            body, ct = encode_form(form.replace_field("model", target.model))
            return adapter.surface_call(Endpoint.TRANSCRIPTIONS, target, creds, "POST", body=body, content_type=ct)

        up, trace = await send_routed(inc, req, route, build)
        cost = media_cost(rt.governance.pricer, Endpoint.TRANSCRIPTIONS, up.target, dict(fields),
                          upstream_json(up)) if up.status < 400 else free()
        return Answer.of(up, trace, cost)

    return req, work


# -- serving ----------------------------------------------------------------------------------------


def _pipeline(rt: Runtime, stages: frozenset[str]) -> Pipeline:
    return Pipeline([h for h in rt.pipeline.hooks if h.name in stages])


_CONTROL = bytes(range(32)) + b"\x7f"


def header_value(value: str) -> bytes:
    """A client-chosen name as a header value: latin-1, control characters dropped."""
    return value.encode("latin-1", "replace").translate(None, _CONTROL)


def _routed_headers(ctx: CallContext, answer: Answer, overhead_ms: float) -> RawHeaders:
    headers: RawHeaders = [(b"x-request-id", ctx.request_id.encode())]
    target = answer.target
    if target is not None:
        headers += [
            (b"x-fluxway-provider", target.provider.encode()),
            (b"x-fluxway-model", header_value(target.model)),
            (b"x-fluxway-attempts", str(answer.trace.attempts).encode()),
            (b"x-fluxway-cache", b"off"),
        ]
    headers.append((b"x-fluxway-overhead-ms", f"{overhead_ms:.3f}".encode()))
    for k, v in ctx.response_headers.items():
        headers.append((k.encode("latin-1"), v.encode("latin-1")))
    return headers


async def serve(
    rt: Runtime,
    endpoint: Endpoint,
    prepare: Prepare,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    upload: bool = False,
    objects: bool = False,
) -> None:
    """One surface call: auth, body, pre hooks, admission, the work, the answer, post hooks."""
    started = time.perf_counter()
    headers = request_headers(scope)
    began = False  # the answer's start was sent: an error past it can only end the body
    client_send = send

    async def send_once(message: Message) -> None:
        nonlocal began
        if message["type"] == "http.response.start":
            if began:
                raise RuntimeError("the answer has begun; it cannot be started again")
            began = True
        await client_send(message)

    send = send_once
    request_id = normalise_request_id(headers.get("x-request-id")) or rt.next_request_id()
    ingress = OpenAIIngress()
    server = rt.cfg.server
    ctx: CallContext | None = None
    outcome: Outcome | None = None
    calls = None
    held: str | None = None
    admitted = False
    try:
        api_key = ingress.api_key(headers)
        principal = await rt.principal(api_key)
        tags = parse_tags(headers.get(TAGS_HEADER))
        body = b""
        if scope["method"] in ("POST", "PUT", "PATCH"):
            reading = rt.admission.begin_read(principal)
            try:
                limit = server.max_upload_bytes if upload else server.max_body_bytes
                body = await read_body(receive, headers, limit, server.body_timeout_s, scope)
            finally:
                rt.admission.end_read(reading)
        query = scope.get("query_string", b"").decode("latin-1")
        inc = Incoming(rt, endpoint, scope["method"], scope["path"], query, headers, body, principal, request_id)
        req, work = prepare(inc)
        ctx = CallContext(request_id, "openai", headers, api_key, req, started, principal)
        if tags is not None:
            ctx.put(TAGS, tags)
        calls = _pipeline(rt, _OBJECT_STAGES if objects else _MODEL_STAGES).for_call(ctx)
        await calls.pre()
        held = rt.admission.enter(ctx.principal)
        admitted = True
        answer = await work(ctx)
        ctx.put(COST, answer.cost)
        overhead_ms = max((time.perf_counter() - started - answer.trace.upstream_s) * 1000.0, 0.0)
        hdrs = _routed_headers(ctx, answer, overhead_ms)
        hdrs.append((b"content-type", header_value(answer.content_type)))
        outcome = Outcome(
            answer.status, answer.target, answer.trace.attempts, answer.cost.usage,
            latency_ms=(time.perf_counter() - started) * 1000.0, upstream_ms=answer.trace.upstream_s * 1000.0,
            overhead_ms=overhead_ms, tried=answer.trace.tried,
        )
        if answer.status >= 400:
            outcome.error = GatewayError(answer.status, answer.body[:500].decode("utf-8", "replace"))
        if answer.stream is None:
            await calls.post_early(outcome)
            await respond(send, answer.status, answer.body, hdrs)
        else:
            await _stream(ctx, calls.post_early, outcome, answer.stream, hdrs, send)
    except GatewayError as err:
        log_fields = {"request_id": request_id, "status": err.status}
        if err.status >= 500 or err.status == 429:
            log.warning("request %s failed: %s %s", request_id, err.status, err.message, extra=log_fields)
        else:
            log.info("request %s rejected: %s %s", request_id, err.status, err.message, extra=log_fields)
        attempts = err.headers.get("x-fluxway-attempts")
        outcome = Outcome(err.status, error=err, latency_ms=(time.perf_counter() - started) * 1000.0,
                          attempts=int(attempts) if attempts else 0, tried=list(err.tried))
        if calls is not None:
            await calls.post_early(outcome)
        await respond(send, err.status, ingress.render_error(err), _error_headers(request_id, err))
    except Exception:
        log.exception("request %s: internal error", request_id)
        outcome = Outcome(500, error=_INTERNAL, latency_ms=(time.perf_counter() - started) * 1000.0)
        if calls is not None:
            await calls.post_early(outcome)
        if began:  # end the body already begun
            await client_send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await respond(send, 500, ingress.render_error(_INTERNAL), _error_headers(request_id, _INTERNAL))
    finally:
        if admitted:
            rt.admission.leave(held)
        if outcome is not None:
            model = ctx.request.model if ctx is not None else ""
            if model not in rt.executor.routes:
                model = "(direct)" if "/" in model else "(none)"
            cost = ctx.get(COST) if ctx is not None else None
            rt.stats.observe(ingress.name, endpoint.value, model, outcome, cost.usd if cost is not None else 0.0)
            if calls is not None:
                await calls.post_late(outcome)
            if rt.cfg.observability.logs.requests:
                log_call(log, request_id, headers, ctx, outcome)


def _error_headers(request_id: str, err: GatewayError) -> RawHeaders:
    headers: RawHeaders = [JSON_CT, (b"x-request-id", request_id.encode())]
    for k, v in err.headers.items():
        headers.append((k.encode("latin-1"), v.encode("latin-1")))
    return headers


async def _stream(
    ctx: CallContext,
    post_early: Callable[[Outcome], Awaitable[None]],
    outcome: Outcome,
    upstream: OpenStream,
    hdrs: RawHeaders,
    send: Send,
) -> None:
    """Binary content (speech audio, a file's bytes) as it arrives; the record before its end."""
    length = upstream.headers.get("content-length")
    if length is not None and length.isdigit():
        hdrs.append((b"content-length", length.encode()))
    await send({"type": "http.response.start", "status": outcome.status, "headers": hdrs})
    try:
        async for data in upstream.chunks():
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
        upstream.release()
    except Exception as exc:  # the upstream broke off (or the client went away): end what was sent
        upstream.close()
        ctx.partial = f"the upstream body broke off: {exc}"
        log.warning("request %s: pass-through body cut: %s", ctx.request_id, exc)
    outcome.latency_ms = (time.perf_counter() - ctx.started) * 1000.0
    await post_early(outcome)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def model_handler(endpoint: Endpoint) -> Handler:
    prepare = _transcriptions if endpoint is Endpoint.TRANSCRIPTIONS else _model_json(endpoint)
    upload = endpoint is Endpoint.TRANSCRIPTIONS

    async def run(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(rt, endpoint, prepare, scope, receive, send, upload=upload)

    return run


def routes() -> dict[tuple[str, str], Handler]:
    """The surface's fixed routes (the per-object ones, ``/v1/files/{id}`` ..., are matched by prefix:
    :func:`fluxway.api.surface_objects.object_handler`)."""
    from fluxway.api import surface_objects as objs

    return {
        ("POST", "/v1/images/generations"): model_handler(Endpoint.IMAGES),
        ("POST", "/v1/audio/speech"): model_handler(Endpoint.SPEECH),
        ("POST", "/v1/audio/transcriptions"): model_handler(Endpoint.TRANSCRIPTIONS),
        ("POST", "/v1/rerank"): model_handler(Endpoint.RERANK),
        ("POST", "/v1/files"): objs.upload_file,
        ("GET", "/v1/files"): objs.list_files,
        ("POST", "/v1/batches"): objs.create_batch,
        ("GET", "/v1/batches"): objs.list_batches,
    }


__all__ = ["Answer", "Form", "Incoming", "Upstream", "routes", "serve"]
