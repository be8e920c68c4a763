"""The executor: owns the I/O of a routed call — build, send, parse, retry, hedge, fall back.

Which target comes next is decided by the pure planner (:mod:`.plan`) from a health snapshot; the
executor carries the plan out and reports every attempt's outcome to the :class:`HealthBoard`.

Order of attempts for a public model: its targets as planned (each tried ``retry.attempts`` times
for retryable errors, with backoff), then its ``fallbacks`` models' targets; a context-length error
moves to the ``context_fallback`` chain instead. A caller fault (bad request) stops at once.

Calls go out through the :class:`~.transport.Transport` protocol; time comes only from the injected
``clock`` and ``sleep``. The hedged race is :mod:`.hedging`; the caller's error when every attempt
failed, :mod:`.outcome`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from fluxway.adapters.base import Adapter, StreamDecoder
from fluxway.adapters.settings import ProviderSettings
from fluxway.canonical import (
    JSON,
    CanonicalRequest,
    Credentials,
    Endpoint,
    ErrorKind,
    HttpCall,
    Price,
    StreamChunk,
    Target,
    UpstreamError,
)
from fluxway.config import Config, HedgeConfig, ModelConfig, RetryConfig
from fluxway.config_base import TimeoutConfig
from fluxway.credentials import CredentialSource, create_source
from fluxway.errors import GatewayError, model_not_found
from fluxway.policy.hooks import ModelFilter
from fluxway.redact import Redactor
from fluxway.routing.clock import Clock
from fluxway.routing.health import HealthBoard, Permit
from fluxway.routing.health_settings import HealthSettings
from fluxway.routing.hedging import hedged
from fluxway.routing.outcome import Completed, Trace, failure
from fluxway.routing.plan import PlannerState, backoff_s, context_fallback_chain, plan, plan_fallback_chain
from fluxway.routing.stream import Leg, RoutedStream
from fluxway.routing.transport import Timeouts, Transport

if TYPE_CHECKING:
    from fluxway.tracing.spans import CallSpan

__all__ = ["Completed", "Counters", "Executor", "Route", "Trace"]

log = logging.getLogger("fluxway.executor")

T = TypeVar("T")


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

    @property
    def hedge(self) -> HedgeConfig | None:
        return self.model.hedge if self.model is not None else None

    @property
    def stream_failover(self) -> bool:
        return self.model is not None and self.model.stream_failover


@dataclass(slots=True)
class Counters:
    """Executor events for metrics."""

    attempts: int = 0
    failures: int = 0
    retries: int = 0  # another attempt at the target that just failed
    failovers: int = 0  # an attempt at another target (or fallback model) after a failure
    hedges: int = 0
    hedge_wins: int = 0
    stream_failovers: int = 0


class _CallerFault(Exception):
    """The request itself is at fault: no other target will do better."""


class _ContextTooLong(Exception):
    """The request is too long for this model: move to the context_fallback chain."""


class Executor:
    """Carries out routed calls for one runtime."""

    def __init__(
        self,
        cfg: Config,
        adapters: dict[str, Adapter],
        transport: Transport,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        price_of: Callable[[Target], Price | None] | None = None,
        credential_sources: dict[str, CredentialSource] | None = None,
    ) -> None:
        self.cfg = cfg
        self.adapters = adapters
        self.transport = transport
        self.sleep = sleep
        b = cfg.routing.breaker
        self.routes: dict[str, Route] = {}
        for m in cfg.models:
            targets = tuple(t.to_target() for t in m.targets)
            self.routes[m.name] = Route(m.name, targets, m.strategy, m.retry, m.fallbacks, m.timeout, m)
        # The health board keeps these for good (direct names live in its bounded LRU).
        keys = [t.key for r in self.routes.values() for t in r.targets]
        for p in cfg.providers:
            if p.health_check and p.health_check.model:
                keys.append(Target(p.name, p.health_check.model).key)
        self.configured_targets: tuple[str, ...] = tuple(dict.fromkeys(keys))
        self.board = HealthBoard(
            clock,
            HealthSettings(
                failure_threshold=b.failure_threshold,
                failure_rate=b.failure_rate,
                window_s=b.window_s,
                min_volume=b.min_volume,
                open_cooldown_s=b.open_cooldown_s,
                max_open_cooldown_s=max(b.max_open_cooldown_s, b.open_cooldown_s),
                half_open_probes=b.half_open_probes,
                rate_limit_cooldown_s=b.rate_limit_cooldown_s,
            ),
            pinned=self.configured_targets,
        )
        self._rng = rng or random.Random()
        self.planner = PlannerState(self._rng, explore=cfg.routing.explore)
        self.counters = Counters()
        self._providers = {p.name: p for p in cfg.providers}
        self._creds = {p.name: [Credentials(k) for k in p.api_keys] for p in cfg.providers}
        # Providers whose credentials come from a flow (tokens, temporary AWS keys), by name.
        self._sources: dict[str, CredentialSource] = (
            credential_sources if credential_sources is not None
            else {p.name: src for p in cfg.providers if (src := create_source(p, transport)) is not None}
        )
        self.public_models = sorted(self.routes)
        self.models_by_name = {m.name: m for m in cfg.models}
        self.price_of = price_of  # the cost strategy's prices (the config's and the shipped table's)
        # Upstream error text is scrubbed of provider keys and key-shaped strings where it enters.
        self.redactor = Redactor.from_config(cfg)

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

    def chain(self, route: Route, allows: ModelFilter | None) -> list[Route]:
        """The route, then its fallbacks (:func:`plan_fallback_chain`); with ``allows``, only the
        models the caller may use."""
        names = plan_fallback_chain(route.name, self.routes, allows)
        return [route, *(self.routes[n] for n in names[1:])]

    def plan(self, route: Route, endpoint: Endpoint, exclude: frozenset[str] = frozenset()) -> list[Target]:
        if len(route.targets) == 1:  # nothing to choose: the breaker is consulted when acquiring
            t = route.targets[0]
            return [t] if t.key not in exclude and self.adapters[t.provider].supports(endpoint) else []
        snapshot = self.board.snapshot([t.key for t in route.targets])
        targets = plan(route, snapshot, self.planner, snapshot.at, price_of=self.price_of, exclude=exclude)
        return [t for t in targets if self.adapters[t.provider].supports(endpoint)]

    # -- the attempt loop ---------------------------------------------------------------------

    def timeouts(self, target: Target, route: Route) -> Timeouts:
        t = route.timeout or self._providers[target.provider].timeout
        return Timeouts(t.connect, t.first_token, t.total)  # hashable: the transport caches per value

    def continuation(self, target: Target) -> str:
        """How ``target`` continues a partial assistant answer (see :mod:`.continuation`)."""
        return self._providers[target.provider].continuation_for(target.model)

    def acquire(self, target: Target, force: bool = False) -> Permit | None:
        return self.board.acquire(target.key, n_keys=len(self._creds[target.provider]), force=force)

    def credentials(self, target: Target, permit: Permit) -> Credentials:
        keys = self._creds[target.provider]
        if not keys and (unset := self._providers[target.provider].unset_key_vars):
            raise UpstreamError(
                ErrorKind.AUTH,
                f"provider '{target.provider}' has no API key ({' / '.join(unset)} is not set)",
            )
        return keys[permit.key_index] if permit.key_index is not None and keys else Credentials(None)

    async def authorize(self, target: Target, permit: Permit) -> Credentials:
        """:meth:`credentials`, or what the provider's credential flow holds (fetched or refreshed
        first when it must be: a failure there is this attempt's failure)."""
        source = self._sources.get(target.provider)
        if source is None:
            return self.credentials(target, permit)
        return await source.credentials()

    async def attempt_once(
        self,
        req: CanonicalRequest,
        route: Route,
        target: Target,
        permit: Permit,
        attempt: Callable[[CanonicalRequest, Route, Target, Permit, Trace], Awaitable[T]],
        trace: Trace,
        hedge: bool = False,
    ) -> T:
        trace.attempts += 1
        trace.tried.append(target.key)
        self.counters.attempts += 1
        # Tracing on: this attempt's span, current in this task while the attempt sends.
        span = trace.span.attempt(target, trace.attempts, hedge) if trace.span is not None else None
        try:
            return await attempt(req, route, target, permit, trace)
        except UpstreamError as err:
            self.redactor.error(err)
            err.target = target.key
            trace.errors.append(err)
            self.counters.failures += 1
            self.board.record_failure(permit, err.kind, err.retry_after)
            log.info("attempt %d at %s failed: %s %s", trace.attempts, target.key, err.kind.value, err.message)
            if span is not None:
                span.fail(err)
            raise
        except BaseException:
            self.board.release(permit)
            if span is not None:
                span.cancel()
            raise
        finally:
            if span is not None:
                span.leave()

    def after_failure(self, err: UpstreamError) -> None:
        """Raise the control-flow signal an error calls for, if any."""
        if err.kind is ErrorKind.CONTEXT_LENGTH:
            raise _ContextTooLong from None
        if not err.kind.try_next_target:
            raise _CallerFault from None

    async def run(
        self,
        req: CanonicalRequest,
        route: Route,
        attempt: Callable[[CanonicalRequest, Route, Target, Permit, Trace], Awaitable[T]],
        trace: Trace,
        exclude: frozenset[str] = frozenset(),
        allows: ModelFilter | None = None,
    ) -> T:
        chain = self.chain(route, allows)
        context_switched = False
        i = 0
        while i < len(chain):
            r = chain[i]
            i += 1
            try:
                return await self._run_route(req, r, attempt, trace, exclude)
            except _ContextTooLong:
                if context_switched:
                    break
                context_switched = True
                chain = [
                    self.routes[n]
                    for n in context_fallback_chain(r.name, self.models_by_name)
                    if allows is None or allows(n)
                ]
                i = 0
            except _CallerFault:
                break
            except LookupError:
                continue  # no target of this route could be tried
        err = self.failure(route, trace)
        err.headers["x-fluxway-attempts"] = str(trace.attempts)
        err.tried = tuple(trace.tried)
        raise err

    async def _run_route(
        self,
        req: CanonicalRequest,
        r: Route,
        attempt: Callable[[CanonicalRequest, Route, Target, Permit, Trace], Awaitable[T]],
        trace: Trace,
        exclude: frozenset[str],
    ) -> T:
        targets = self.plan(r, req.endpoint, exclude)
        trace.planned += len(targets)
        if not targets:
            raise LookupError(r.name)
        start = 0
        made = trace.attempts
        hedge = r.hedge
        if hedge is not None and len(targets) > 1:
            result, start = await hedged(self, req, r, targets, attempt, trace, hedge)
            if result is not None:
                return result[0]
        last = len(targets) - 1
        retry_more = True  # may a forced (panic) attempt still help after the loop?
        for i, target in enumerate(targets[start:], start):
            for n in range(r.retry.attempts):
                permit = self.acquire(target)
                if permit is None:
                    break
                self._count_next(trace, target)
                try:
                    return await self.attempt_once(req, r, target, permit, attempt, trace)
                except UpstreamError as err:
                    self.after_failure(err)
                    retry_more = err.kind.retryable and err.kind is not ErrorKind.RATE_LIMITED
                    if not err.kind.retryable:
                        break
                    if err.kind is ErrorKind.RATE_LIMITED:
                        # The board has cooled that key: another key of the provider may go at once;
                        # with no other key, waiting out retry-after here would only stall the client.
                        if len(self._creds[target.provider]) > 1:
                            continue
                        break
                    if err.kind is ErrorKind.TIMEOUT and i < last:
                        break  # a target that just timed out would likely cost another full timeout
                    if n + 1 < r.retry.attempts:
                        await self.sleep(backoff_s(n + 1, r.retry.backoff_ms, r.retry.max_backoff_ms, self._rng))
        # Panic mode (as Envoy's): breakers must never make a call worse off than no breaker. When
        # they refused attempts (every target open, or the only one opened by this call's own
        # failure), the call still gets its retry budget, forced through at the soonest to recover.
        while retry_more and trace.attempts - made < r.retry.attempts:
            if trace.attempts > made:
                await self.sleep(
                    backoff_s(trace.attempts - made, r.retry.backoff_ms, r.retry.max_backoff_ms, self._rng)
                )
            target = self._soonest(targets)
            permit = self.acquire(target, force=True)
            if permit is None:
                break
            self._count_next(trace, target)
            try:
                return await self.attempt_once(req, r, target, permit, attempt, trace)
            except UpstreamError as err:
                self.after_failure(err)
                retry_more = err.kind.retryable and err.kind is not ErrorKind.RATE_LIMITED
        raise LookupError(r.name)

    def _count_next(self, trace: Trace, target: Target) -> None:
        """Count an attempt that follows a failed one of the same call as a retry or a failover
        (hedged attempts are counted as hedges instead)."""
        if trace.tried:
            if trace.tried[-1] == target.key:
                self.counters.retries += 1
            else:
                self.counters.failovers += 1

    def _soonest(self, targets: list[Target]) -> Target:
        """The planned target whose breaker or cool-down ends first."""
        if len(targets) == 1:
            return targets[0]
        now = self.board.now()
        return min(targets, key=lambda t: self.board.target(t.key).recovers_at(now))

    # -- failure ------------------------------------------------------------------------------

    def failure(self, route: Route, trace: Trace) -> GatewayError:
        """The answer when every attempt failed."""
        return failure(route.name, trace)

    # -- whole answers ------------------------------------------------------------------------

    async def complete(
        self, req: CanonicalRequest, route: Route, allows: ModelFilter | None = None, span: CallSpan | None = None
    ) -> Completed:
        """Serve ``req`` whole; ``allows`` limits the fallbacks to the models the caller may use;
        ``span``: the call's trace span (tracing on)."""
        trace = Trace(span=span)
        return await self.run(req, route, self._complete_once, trace, frozenset(), allows)

    async def _complete_once(
        self, req: CanonicalRequest, route: Route, target: Target, permit: Permit, trace: Trace
    ) -> Completed:
        adapter = self.adapters[target.provider]
        call = adapter.build(req, target, await self.authorize(target, permit))
        span = trace.span.sending(call) if trace.span is not None else None
        reply = await self.transport.send(
            call, self.timeouts(target, route), self._providers[target.provider].max_response_bytes
        )
        trace.upstream_s += reply.elapsed
        resp = adapter.parse(req, target, reply.status, reply.headers, reply.body)
        self.board.record_success(permit, total_s=reply.elapsed)
        if span is not None:
            span.answered(reply.status, resp)
        return Completed(resp, target, trace)

    # -- streams ------------------------------------------------------------------------------

    async def open_stream(
        self, req: CanonicalRequest, route: Route, allows: ModelFilter | None = None, span: CallSpan | None = None
    ) -> RoutedStream:
        """Try targets until one produces its first chunk; the client sees none of the failures."""
        trace = Trace(span=span)
        leg = await self.run(req, route, self.open_leg, trace, frozenset(), allows)
        return RoutedStream(self, req, route, leg, trace, allows)

    async def open_leg(
        self, req: CanonicalRequest, route: Route, target: Target, permit: Permit, trace: Trace
    ) -> Leg:
        adapter = self.adapters[target.provider]
        call = adapter.build(req, target, await self.authorize(target, permit))
        return await self.open_call(call, adapter.stream_decoder(req, target), req.body, route, target, permit, trace)

    async def open_call(
        self,
        call: HttpCall,
        decoder: StreamDecoder,
        body: JSON,
        route: Route,
        target: Target,
        permit: Permit,
        trace: Trace,
    ) -> Leg:
        """Open one upstream stream and read up to its first chunk (``body``: the request sent, for
        Fluxway's own count of its prompt)."""
        adapter = self.adapters[target.provider]
        span = trace.span.sending(call) if trace.span is not None else None
        t0 = self.board.now()
        upstream = await self.transport.open_stream(call, self.timeouts(target, route))
        if span is not None:
            span.status_code(upstream.status)
        ok = False
        try:
            if upstream.status >= 400:
                body_bytes = await upstream.read(self._providers[target.provider].max_response_bytes)
                raise adapter.classify_error(upstream.status, upstream.headers, body_bytes)
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
            elapsed = self.board.now() - t0
            trace.upstream_s += elapsed
            self.board.record_first_byte(permit, elapsed)
            ok = True
            return Leg(target, permit, upstream, decoder, chunks, first, body, ended, span)
        finally:
            if not ok:
                upstream.close()

    # -- active health checks -----------------------------------------------------------------

    def health_check_targets(self, provider: ProviderSettings) -> list[Target]:
        hc = provider.health_check
        if hc is None:
            return []
        if hc.model:
            return [Target(provider.name, hc.model)]
        seen: dict[str, Target] = {}
        for route in self.routes.values():
            for t in route.targets:
                if t.provider == provider.name:
                    seen.setdefault(t.key, Target(t.provider, t.model))
        return list(seen.values())

    async def probe(self, target: Target, timeout_s: float) -> UpstreamError | None:
        """One cheap request to ``target``; its outcome feeds the health board."""
        req = CanonicalRequest(
            Endpoint.CHAT, target.key, {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        )
        permit = self.acquire(target, force=True)
        if permit is None:
            return None
        route = Route(target.key, (target,), timeout=TimeoutConfig(connect=timeout_s, first_token=timeout_s,
                                                                   total=timeout_s))
        try:
            await self._complete_once(req, route, target, permit, Trace())
            return None
        except UpstreamError as err:
            self.redactor.error(err)
            if err.kind in (ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_FILTER, ErrorKind.CONTEXT_LENGTH):
                self.board.record_success(permit)  # it answered: alive
                return None
            self.board.record_failure(permit, err.kind, err.retry_after)
            return err
        finally:
            self.board.release(permit)

    async def run_health_checks(self) -> None:
        """Forever: probe every provider that has ``health_check`` on its interval."""
        jobs = [
            self._check_loop(p) for p in self.cfg.providers if p.health_check is not None
        ]
        if jobs:
            await asyncio.gather(*jobs)

    async def _check_loop(self, provider: ProviderSettings) -> None:
        hc = provider.health_check
        assert hc is not None
        targets = self.health_check_targets(provider)
        while True:
            for target in targets:
                err = await self.probe(target, hc.timeout_s)
                if err is not None:
                    log.warning("health check of %s failed: %s %s", target.key, err.kind.value, err.message)
            await self.sleep(hc.interval_s)
