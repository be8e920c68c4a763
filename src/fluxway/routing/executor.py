"""The executor: owns the I/O of a routed call — build, send, parse, retry, fall back.

Routing decisions (which target next) come from the planner; the executor only carries them out and
reports every attempt's outcome back to the health board.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from fluxway.adapters.base import Adapter, StreamDecoder
from fluxway.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    Credentials,
    ErrorKind,
    StreamChunk,
    Target,
    UpstreamError,
    Usage,
)
from fluxway.config import Config, ModelConfig, ProviderConfig, RetryConfig, TimeoutConfig
from fluxway.errors import GatewayError, model_not_found
from fluxway.transport import Timeouts, Transport, UpstreamStream

log = logging.getLogger("fluxway.executor")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a requested model name may go."""

    name: str
    targets: tuple[Target, ...]
    strategy: str = "fallback"
    retry: RetryConfig = field(default_factory=RetryConfig)
    fallbacks: tuple[str, ...] = ()
    timeout: TimeoutConfig | None = None
    model: ModelConfig | None = None


@dataclass(slots=True)
class Trace:
    """What the attempts of one call did (for headers, errors and usage records)."""

    attempts: int = 0
    upstream_s: float = 0.0
    tried: list[str] = field(default_factory=list)
    errors: list[UpstreamError] = field(default_factory=list)


@dataclass(slots=True)
class Completed:
    response: CanonicalResponse
    target: Target
    trace: Trace


@dataclass(slots=True)
class OpenedStream:
    """A stream that has produced its first chunks; ``rest()`` yields the others."""

    target: Target
    trace: Trace
    first: list[StreamChunk]
    _upstream: UpstreamStream
    _decoder: StreamDecoder
    _chunks: AsyncIterator[bytes]
    usage: Usage | None = None
    finished: bool = False
    ended: bool = False  # the upstream closed while the first chunks were read
    text_chars: int = 0  # streamed text, for estimating usage when the upstream sends none

    def _track(self, chunks: list[StreamChunk]) -> list[StreamChunk]:
        for c in chunks:
            data = c.data
            u = data.get("usage")
            if u:
                self.usage = Usage.from_openai(u)
            for choice in data.get("choices") or ():
                delta = choice.get("delta") or choice
                text = delta.get("content") or delta.get("text")
                if isinstance(text, str):
                    self.text_chars += len(text)
        return chunks

    async def rest(self) -> AsyncIterator[StreamChunk]:
        """The remaining chunks; raises UpstreamError if the upstream breaks mid-stream."""
        if self.ended:
            self.finished = True
            self._upstream.release()
            return
        try:
            async for data in self._chunks:
                for c in self._track(self._decoder.feed(data)):
                    yield c
            for c in self._track(self._decoder.close()):
                yield c
            self.finished = True
            self._upstream.release()
        finally:
            if not self.finished:
                self._upstream.close()

    def close(self) -> None:
        self._upstream.close()


class KeyRing:
    """Rotates a provider's API keys round-robin."""

    __slots__ = ("_i", "_keys")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = [Credentials(k) for k in keys] or [Credentials(None)]
        self._i = 0

    def next(self) -> Credentials:
        creds = self._keys[self._i % len(self._keys)]
        self._i += 1
        return creds


class SmoothWeighted:
    """Nginx's smooth weighted round-robin over a fixed list of targets."""

    __slots__ = ("_current", "_targets", "_total")

    def __init__(self, targets: tuple[Target, ...]) -> None:
        self._targets = targets
        self._current = [0.0] * len(targets)
        self._total = sum(t.weight for t in targets)

    def order(self) -> list[Target]:
        if len(self._targets) == 1:
            return list(self._targets)
        best = 0
        for i, t in enumerate(self._targets):
            self._current[i] += t.weight
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= self._total
        first = self._targets[best]
        return [first, *(t for t in self._targets if t is not first)]


def _timeouts(provider: ProviderConfig, route: Route) -> Timeouts:
    t = route.timeout or provider.timeout
    return Timeouts(t.connect, t.first_token, t.total)


class Executor:
    """Carries out routed calls for one runtime."""

    def __init__(
        self,
        cfg: Config,
        adapters: dict[str, Adapter],
        transport: Transport,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.adapters = adapters
        self.transport = transport
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._providers = {p.name: p for p in cfg.providers}
        self._keys = {p.name: KeyRing(p.api_keys) for p in cfg.providers}
        self.routes: dict[str, Route] = {}
        for m in cfg.models:
            targets = tuple(t.to_target() for t in m.targets)
            self.routes[m.name] = Route(m.name, targets, m.strategy, m.retry, m.fallbacks, m.timeout, m)
        self._weighted = {name: SmoothWeighted(r.targets) for name, r in self.routes.items()}
        self.public_models = sorted(self.routes)

    # -- resolving ----------------------------------------------------------------------------

    def resolve(self, model: str) -> Route:
        route = self.routes.get(model)
        if route is not None:
            return route
        if self.cfg.routing.allow_direct:
            provider, sep, upstream_model = model.partition("/")
            if sep and upstream_model and provider in self._providers:
                return Route(model, (Target(provider, upstream_model),))
        raise model_not_found(model, self.public_models)

    def plan(self, route: Route) -> list[Target]:
        if route.strategy == "weighted" and route.name in self._weighted:
            return self._weighted[route.name].order()
        return list(route.targets)

    def _chain(self, route: Route) -> list[Route]:
        chain = [route]
        seen = {route.name}
        i = 0
        while i < len(chain):
            for name in chain[i].fallbacks:
                if name not in seen and name in self.routes:
                    seen.add(name)
                    chain.append(self.routes[name])
            i += 1
        return chain

    def _attempts(self, route: Route, req: CanonicalRequest) -> list[tuple[Route, Target, Adapter]]:
        out: list[tuple[Route, Target, Adapter]] = []
        for r in self._chain(route):
            for target in self.plan(r):
                adapter = self.adapters[target.provider]
                if adapter.supports(req.endpoint):
                    out.append((r, target, adapter))
        return out

    # -- failure handling ---------------------------------------------------------------------

    def _backoff(self, retry: RetryConfig, n: int, err: UpstreamError) -> float:
        if err.retry_after is not None and err.kind is ErrorKind.RATE_LIMITED:
            return float(min(err.retry_after, retry.max_backoff_ms / 1000.0))
        base = retry.backoff_ms / 1000.0 * (2.0**n)
        return min(base, retry.max_backoff_ms / 1000.0) * (0.5 + self._rng.random() / 2)

    def failure(self, route: Route, trace: Trace) -> GatewayError:
        """The answer when every attempt failed."""
        if not trace.errors:
            return GatewayError(
                400,
                f"no target of model '{route.name}' supports this endpoint",
                param="model",
                code="unsupported_endpoint",
            )
        last = trace.errors[-1]
        tried = "; ".join(f"{e.target}: {e.kind.value} ({e.message})" for e in trace.errors)
        if last.kind in (ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_LENGTH, ErrorKind.CONTENT_FILTER) and last.status:
            code = {
                ErrorKind.CONTEXT_LENGTH: "context_length_exceeded",
                ErrorKind.CONTENT_FILTER: "content_filter",
            }.get(last.kind, "upstream_bad_request")
            param = None
            if last.body and isinstance(last.body.get("error"), dict):
                param = last.body["error"].get("param")
            return GatewayError(
                last.status if 400 <= last.status < 500 else 400,
                f"{last.target}: {last.message}",
                code=code,
                param=param if isinstance(param, str) else None,
            )
        if last.kind is ErrorKind.RATE_LIMITED:
            retry_after = last.retry_after if last.retry_after is not None else 1.0
            return GatewayError(
                429,
                f"every target of model '{route.name}' is rate limited: {tried}",
                type="rate_limit_error",
                code="upstream_rate_limited",
                headers={"retry-after": str(max(1, int(retry_after + 0.999)))},
            )
        if last.kind is ErrorKind.TIMEOUT:
            return GatewayError(
                504, f"every target of model '{route.name}' timed out: {tried}", type="server_error", code="timeout"
            )
        return GatewayError(
            502,
            f"every target of model '{route.name}' failed: {tried}",
            type="server_error",
            code="upstream_error",
        )

    # -- whole answers ------------------------------------------------------------------------

    async def complete(self, req: CanonicalRequest, route: Route) -> Completed:
        trace = Trace()
        for r, target, adapter in self._attempts(route, req):
            provider = self._providers[target.provider]
            timeouts = _timeouts(provider, r)
            for n in range(r.retry.attempts):
                trace.attempts += 1
                trace.tried.append(target.key)
                try:
                    call = adapter.build(req, target, self._keys[target.provider].next())
                    reply = await self.transport.send(call, timeouts)
                    trace.upstream_s += reply.elapsed
                    resp = adapter.parse(req, target, reply.status, reply.headers, reply.body)
                    return Completed(resp, target, trace)
                except UpstreamError as err:
                    err.target = target.key
                    trace.errors.append(err)
                    log.info("attempt %d at %s failed: %s %s", trace.attempts, target.key, err.kind, err.message)
                    if not err.kind.retryable:
                        break
                    if n + 1 < r.retry.attempts:
                        await self._sleep(self._backoff(r.retry, n, err))
            if trace.errors and not trace.errors[-1].kind.try_next_target:
                break
        raise self.failure(route, trace)

    # -- streams ------------------------------------------------------------------------------

    async def open_stream(self, req: CanonicalRequest, route: Route) -> OpenedStream:
        """Try targets until one produces its first chunk; the client sees none of the failures."""
        trace = Trace()
        for r, target, adapter in self._attempts(route, req):
            provider = self._providers[target.provider]
            timeouts = _timeouts(provider, r)
            for n in range(r.retry.attempts):
                trace.attempts += 1
                trace.tried.append(target.key)
                try:
                    opened = await self._first_chunks(req, target, adapter, timeouts, trace)
                    return opened
                except UpstreamError as err:
                    err.target = target.key
                    trace.errors.append(err)
                    log.info("stream attempt %d at %s failed: %s %s", trace.attempts, target.key, err.kind, err.message)
                    if not err.kind.retryable:
                        break
                    if n + 1 < r.retry.attempts:
                        await self._sleep(self._backoff(r.retry, n, err))
            if trace.errors and not trace.errors[-1].kind.try_next_target:
                break
        raise self.failure(route, trace)

    async def _first_chunks(
        self, req: CanonicalRequest, target: Target, adapter: Adapter, timeouts: Timeouts, trace: Trace
    ) -> OpenedStream:
        call = adapter.build(req, target, self._keys[target.provider].next())
        t0 = time.perf_counter()
        upstream = await self.transport.open_stream(call, timeouts)
        ok = False
        try:
            if upstream.status >= 400:
                body = await upstream.read()
                raise adapter.classify_error(upstream.status, upstream.headers, body)
            decoder = adapter.stream_decoder(req, target)
            chunks = upstream.chunks().__aiter__()
            first: list[StreamChunk] = []
            ended = False
            while not first:
                try:
                    data = await chunks.__anext__()
                except StopAsyncIteration:
                    ended = True
                    first = decoder.close()
                    if not first:
                        raise UpstreamError(ErrorKind.PROTOCOL, "upstream stream ended without any event") from None
                    break
                first = decoder.feed(data)
            trace.upstream_s += time.perf_counter() - t0
            opened = OpenedStream(target, trace, first, upstream, decoder, chunks, ended=ended)
            opened._track(first)
            ok = True
            return opened
        finally:
            if not ok:
                upstream.close()
