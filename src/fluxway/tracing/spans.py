"""Spans as plain slotted records, and the :class:`Tracer` that starts them.

A :class:`CallSpan` (SERVER) covers one inference call from its first byte to its last; each upstream
attempt is an :class:`AttemptSpan` (CLIENT) child, started by the executor's ``attempt_once`` and made
the *current* attempt of its task (a context variable, so hedged attempts racing in their own tasks
keep theirs apart) until the executor sends its request: ``CallSpan.sending(call)`` then writes the
attempt's ``traceparent`` into the upstream request. A whole answer ends its attempt span when it is
parsed; a stream's when the stream ends, breaks or is abandoned. Ended spans go to a
:class:`SpanSink` (the batch exporter), which must never block.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from fluxway.canonical import CanonicalRequest, CanonicalResponse, Endpoint, HttpCall, Target, UpstreamError, Usage
from fluxway.tracing.context import Parent, format_traceparent, parse_traceparent
from fluxway.tracing.genai import (
    OPERATIONS,
    AttrValue,
    provider_name,
    request_attributes,
    response_attributes,
    usage_attributes,
)

if TYPE_CHECKING:
    from fluxway.policy.hooks import Outcome

# OTLP's enum values (opentelemetry/proto/trace/v1/trace.proto), kept here so spans need no protobuf.
KIND_SERVER = 2
KIND_CLIENT = 3
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


class SpanSink(Protocol):
    """Where ended spans go. ``submit`` must return at once (drop rather than wait)."""

    def submit(self, span: Span) -> None: ...

    def counts(self) -> Mapping[str, int]:
        """Spans by outcome (``exported``, ``dropped``, ``failed``) and ``queued`` (for /metrics)."""
        ...

    async def close(self) -> None:
        """Send what is still waiting; stop."""
        ...


class Span:
    """One finished or running span, in OTLP's terms (ids as bytes, times as Unix nanoseconds)."""

    __slots__ = (
        "attributes",
        "end_ns",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start_ns",
        "status",
        "status_message",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self, trace_id: bytes, span_id: bytes, parent_id: bytes | None, name: str, kind: int, trace_state: str
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.kind = kind
        self.trace_state = trace_state
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.attributes: dict[str, AttrValue] = {}
        self.status = STATUS_UNSET
        self.status_message = ""

    @property
    def ended(self) -> bool:
        return self.end_ns != 0

    @property
    def traceparent(self) -> str:
        """This span's context as a W3C ``traceparent`` (for the request it makes)."""
        return format_traceparent(self.trace_id, self.span_id)

    def error(self, kind: str, message: str = "") -> None:
        self.attributes["error.type"] = kind
        self.status = STATUS_ERROR
        self.status_message = message

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.trace_id.hex()}/{self.span_id.hex()}>"


class Tracer:
    """Starts the call spans of one runtime; ended spans go to ``sink``.

    ``providers`` maps each configured provider's name to its adapter type (for
    ``gen_ai.provider.name``).
    """

    def __init__(
        self, sink: SpanSink, providers: Mapping[str, str], rng: random.Random | None = None,
        sample_ratio: float = 1.0,
    ) -> None:
        self.sink = sink
        self.sample_ratio = sample_ratio
        self._systems = {name: provider_name(kind) for name, kind in providers.items()}
        self._rng = rng or random.Random(os.urandom(16))
        # The attempt running in this task (see the module doc); per tracer, never module-level.
        self.current: ContextVar[AttemptSpan | None] = ContextVar(f"fluxway-attempt-{id(self):x}", default=None)

    def new_trace_id(self) -> bytes:
        return (self._rng.getrandbits(128) or 1).to_bytes(16, "big")

    def new_span_id(self) -> bytes:
        return (self._rng.getrandbits(64) or 1).to_bytes(8, "big")

    def system(self, provider: str) -> str:
        return self._systems.get(provider, provider)

    def start_call(self, headers: Mapping[str, str], endpoint: Endpoint, ingress: str) -> CallSpan | None:
        """The span of one inference call: a child of the caller's ``traceparent`` when it sent one.
        None when the trace is not sampled: the caller's flags say so, or (a call that starts a
        trace) it fell outside ``sample_ratio``; nothing is recorded then."""
        parent = parse_traceparent(headers.get("traceparent"), headers.get("tracestate"))
        if parent is None:
            if self.sample_ratio < 1.0 and self._rng.random() >= self.sample_ratio:
                return None
        elif not parent.sampled:
            return None
        return CallSpan(self, parent, endpoint, ingress)

    async def close(self) -> None:
        await self.sink.close()


class CallSpan(Span):
    """The SERVER span of one call (named ``{operation} {model}`` once the request is read)."""

    __slots__ = ("_tracer", "answer", "failover", "operation")

    def __init__(self, tracer: Tracer, parent: Parent | None, endpoint: Endpoint, ingress: str) -> None:
        op = OPERATIONS[endpoint]
        if parent is None:
            super().__init__(tracer.new_trace_id(), tracer.new_span_id(), None, op, KIND_SERVER, "")
        else:
            super().__init__(parent.trace_id, tracer.new_span_id(), parent.span_id, op, KIND_SERVER,
                             parent.trace_state)
        self._tracer = tracer
        self.operation = op
        self.failover = False  # set while a stream is being continued on another target
        self.answer: AttemptSpan | None = None  # the attempt whose answer the caller got
        self.attributes["gen_ai.operation.name"] = op
        self.attributes["fluxway.ingress"] = ingress

    def request(self, req: CanonicalRequest, request_id: str) -> None:
        """What the caller asked for (once the body is parsed)."""
        self.name = f"{self.operation} {req.model}"
        attrs = self.attributes
        attrs["gen_ai.request.model"] = req.model
        attrs["fluxway.request_id"] = request_id
        if req.stream:
            attrs["fluxway.stream"] = True
        request_attributes(req.body, attrs)

    def attempt(self, target: Target, number: int, hedge: bool = False) -> AttemptSpan:
        """Start the CLIENT span of one upstream attempt, current in this task until ``leave()``."""
        tracer = self._tracer
        span = AttemptSpan(self, tracer.new_span_id(), f"{self.operation} {target.model}")
        system = tracer.system(target.provider)
        attrs = span.attributes
        attrs["gen_ai.operation.name"] = self.operation
        attrs["gen_ai.provider.name"] = system
        attrs["gen_ai.system"] = system
        attrs["gen_ai.request.model"] = target.model
        attrs["fluxway.provider"] = target.provider
        attrs["fluxway.attempt"] = number
        if hedge:
            attrs["fluxway.hedge"] = True
        if self.failover:
            attrs["fluxway.failover"] = True
        span._token = tracer.current.set(span)
        return span

    def sending(self, call: HttpCall) -> AttemptSpan | None:
        """The current attempt is about to send ``call``: its context goes with it."""
        span = self._tracer.current.get()
        if span is not None:
            span.inject(call)
        return span

    def finish(self, outcome: Outcome | None) -> None:
        """End the call with what the caller got, and hand every span of it to the sink."""
        if self.ended:
            return
        attrs = self.attributes
        if outcome is not None:
            attrs["http.response.status_code"] = outcome.status
            if outcome.attempts:
                attrs["fluxway.attempts"] = outcome.attempts
            if outcome.cache != "off":
                attrs["fluxway.cache"] = outcome.cache
            if outcome.target is not None:
                attrs["gen_ai.provider.name"] = attrs["gen_ai.system"] = self._tracer.system(outcome.target.provider)
                attrs["fluxway.target"] = outcome.target.key
            if outcome.usage is not None:
                usage_attributes(outcome.usage, attrs)
            if outcome.error is not None:
                err = outcome.error
                kind = outcome.error_kind or err.code or err.type
                if err.status >= 500 or outcome.error_kind is not None:
                    self.error(kind, err.message)
                else:
                    attrs["error.type"] = kind  # the caller's fault: not an error of this server
        answer = self.answer
        if answer is not None:
            for key in ("gen_ai.response.model", "gen_ai.response.id", "gen_ai.response.finish_reasons"):
                value = answer.attributes.get(key)
                if value is not None:
                    attrs[key] = value
        self.end_ns = time.time_ns()
        self._tracer.sink.submit(self)


class AttemptSpan(Span):
    """The CLIENT span of one upstream attempt."""

    __slots__ = ("_call", "_token")

    def __init__(self, call: CallSpan, span_id: bytes, name: str) -> None:
        super().__init__(call.trace_id, span_id, call.span_id, name, KIND_CLIENT, call.trace_state)
        self._call = call
        self._token: Token[AttemptSpan | None] | None = None

    def leave(self) -> None:
        """No longer the current attempt of this task (the attempt function returned or raised)."""
        token = self._token
        if token is not None:
            self._token = None
            self._call._tracer.current.reset(token)

    def inject(self, call: HttpCall) -> None:
        call.headers["traceparent"] = self.traceparent
        if self.trace_state:
            call.headers["tracestate"] = self.trace_state
        url = urlsplit(call.url)
        if url.hostname:
            self.attributes["server.address"] = url.hostname
            port = url.port or (443 if url.scheme == "https" else 80)
            self.attributes["server.port"] = port

    def status_code(self, status: int) -> None:
        self.attributes["http.response.status_code"] = status

    def answered(self, status: int, response: CanonicalResponse) -> None:
        """A whole answer was parsed: the attempt succeeded."""
        attrs = self.attributes
        attrs["http.response.status_code"] = status
        response_attributes(response.body, attrs)
        if response.usage is not None:
            usage_attributes(response.usage, attrs)
        self._end(ok=True)

    def streamed(self, first: Mapping[str, object] | None, usage: Usage | None, finish_reason: str | None) -> None:
        """The stream this attempt opened ran to its end."""
        attrs = self.attributes
        if first is not None:
            model = first.get("model")
            if isinstance(model, str) and model:
                attrs["gen_ai.response.model"] = model
            rid = first.get("id")
            if isinstance(rid, str) and rid:
                attrs["gen_ai.response.id"] = rid
        if finish_reason:
            attrs["gen_ai.response.finish_reasons"] = (finish_reason,)
        if usage is not None:
            usage_attributes(usage, attrs)
        self._end(ok=True)

    def fail(self, err: UpstreamError) -> None:
        """The attempt failed (``err.message`` already scrubbed by the executor's redactor)."""
        if self.ended:
            return
        if err.status is not None:
            self.attributes["http.response.status_code"] = err.status
        self.error(err.kind.value, err.message)
        self._end(ok=False)

    def cancel(self) -> None:
        """Abandoned: a hedge that lost the race, or a stream whose caller went away."""
        if self.ended:
            return
        self.attributes["fluxway.cancelled"] = True
        self._end(ok=False)

    def _end(self, ok: bool) -> None:
        if self.ended:
            return
        self.end_ns = time.time_ns()
        if ok:
            self._call.answer = self
        self._call._tracer.sink.submit(self)
